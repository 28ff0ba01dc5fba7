"""Pure rules: statuses, triggers, approvals. Standard library only; time is passed in."""
