"""The agent's conversation with its orchestrator, through the port (:mod:`localagent.api.port`): its session
(registration, the client in force, APIs left behind), the claim loop, the heartbeat, the cancel watch and
the batching of many runs' state reports."""
