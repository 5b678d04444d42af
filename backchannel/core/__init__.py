"""Sans-IO domain core: pure state machines and records."""
