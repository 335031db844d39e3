"""Scoring an adapted model: closed-book QA, graders, likelihood probes, retention, and the
passage-clustered statistics every comparison uses."""
