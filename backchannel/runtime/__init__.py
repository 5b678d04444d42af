"""Trio tasks: the Hub, one actor per channel, the journal and the snapshotter."""
