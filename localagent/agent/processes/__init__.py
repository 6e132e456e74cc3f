"""Every process of every run, beyond the one the agent started: tracking (a cgroup per run, or /proc), the
ledger of runs in ``state_dir``, the watchdog that stops them when the agent dies, and the orphans a dead
agent left behind."""
