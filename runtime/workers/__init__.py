"""The worker engine the supervisor and the embedded Pool share: forking and killing
(`process`), the frames on each worker's pipes (`protocol`), the forked child's body
(`child`) and its sandbox (`sandbox`), the parent's records of workers and runs
(`records`), one pool of workers (`pool`), the selector over their pipes (`selector`),
the retry rules (`retry_rules`) and counters (`stats`)."""
