"""Hundreds of virtual clients in Flower's simulation runtime (Ray backend): the same methods,
ClientRuntime and ServerApp as a fleet run, with per-class modelled costs (``htfl run
--simulate N``)."""
