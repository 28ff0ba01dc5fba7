"""`foundry runner`: the coding agent's side. It takes signed jobs from Foundry, runs a coding
command in a git worktree of the run's branch, commits, pushes and opens one pull request, and
reports back — each effect at most once per (run, attempt), across crashes and redeliveries.

 jobs.py      the job and the cancel as Foundry sends them, validated (no I/O)
 workdir.py   where everything lives under the workdir, and the lock that makes it ours
 store.py     the durable record: jobs by Idempotency-Key, and the reports still to send
 server.py    the HTTP side: verify, record, answer (Starlette)
 work.py      the pool of `max_jobs` threads that claim queued jobs, and crash recovery
 execute.py   one job, step by step: worktree, command, commit, push, PR, reports
 git.py       one clone per repository, one worktree per run, commit and push
 command.py   the coding command: argv only, its process group, timeout and cancel
 prompt.py    the prompt text the command reads (data only)
 pulls.py     find the run's open PR before creating one
 reports.py   what is reported to Foundry, under which key, and delivering it durably
 options.py   the runner's settings, resolved from `[runner]` and the flags
"""
