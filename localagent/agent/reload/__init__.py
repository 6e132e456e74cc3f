"""Hot reload: ``watcher`` sees config files change, ``coordinator`` loads and applies a new config once (file
changes and SIGHUP alike), ``diff`` says what changed."""
