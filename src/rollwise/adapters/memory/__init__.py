"""Memory of incidents: where past rollbacks and incidents are kept (LanceDB) and how their RCA is embedded."""
