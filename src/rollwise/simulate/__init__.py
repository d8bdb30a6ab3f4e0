"""Simulated traffic on a virtual clock: the engine runs unchanged, an hour in well under a second."""

from rollwise.simulate.runner import SimulationResult, simulate
from rollwise.simulate.world import Behaviour, SimulatedWorld, TrafficProfile

__all__ = ["Behaviour", "SimulatedWorld", "SimulationResult", "TrafficProfile", "simulate"]
