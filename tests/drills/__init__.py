"""Reliability drills (`make drills`; reduced versions run in `make test`)."""
