"""The post-release watch: keeps watching every service before, during and after a release, detects
anomalies in its metrics as they stream in (``detector``), keeps the log of changes made to it by
rollwise and from outside (``changes``), names the change behind an anomaly with its evidence
(``attribution``), and acts by policy (notify, undo the release, kill the implicated flag) while keeping
an incident record of it all (``incidents``, ``runner``)."""
