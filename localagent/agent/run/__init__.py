"""One run's life on this host, start to end: launch (``launcher``), output (``output`` into ``spool``, shown by
``console``, shipped by ``shipper``), states (``reporter``), the stop/timeout state machine (``stopping``),
the child's end (``reaper``); ``execution`` tells the story in order. ``leftovers`` ships what an earlier
agent's runs left in their spools."""
