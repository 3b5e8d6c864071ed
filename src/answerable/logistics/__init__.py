"""The logistics reference system: a world simulator, four agents, partner APIs and the storm."""
