"""Moving an installation of the PHP graderqueue to this one (docs/MIGRATING.md)."""
