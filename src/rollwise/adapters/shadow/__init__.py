"""Response comparison for mirrored traffic: the comparator process and the router step that runs it."""
