"""The Vagrant backend."""
