"""What tests share: one wait helper, harnesses for the agent and its fake orchestrator, an injectable clock
and back-off, process probes. Test modules import from here, never from each other."""
