"""Log records into templates (Drain, via the Drain3 library), so the RCA can say which kinds of log line
are new in the canary or came more often: ``payment timeout after <*> ms`` rather than a thousand
distinct lines.

One miner per service, in memory, at most ``MAX_TEMPLATES`` clusters each (Drain3 drops the least
recently used). A record is counted under its cluster's id; the id's current template text is looked
up when a window is read, since Drain generalises a template as more lines arrive.
"""

from __future__ import annotations

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

MAX_TEMPLATES = 1000
MAX_LINE = 2000  # characters of a log body that are mined


class LogTemplates:
    """Template ids and texts for one service's log lines."""

    def __init__(self) -> None:
        config = TemplateMinerConfig()
        config.drain_max_clusters = MAX_TEMPLATES
        config.profiling_enabled = False
        self._miner = TemplateMiner(config=config)

    def template_id(self, line: str) -> int:
        result = self._miner.add_log_message(line[:MAX_LINE])
        return int(result["cluster_id"])

    def text(self, template_id: int) -> str:
        cluster = self._miner.drain.id_to_cluster.get(template_id)
        return cluster.get_template() if cluster is not None else f"(template {template_id}, forgotten)"
