"""Measured proposals for the lead (actors/ is theirs): each module here patches the project in the
benchmark's own processes only, so a change can be measured side by side with the shipped code
(``bench.run_all --variant NAME=module:bench.proposals.X``) before anyone edits ``actors/``.
Nothing in the product imports this package."""
