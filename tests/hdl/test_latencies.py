"""The RTL's per-stage latencies add up to the constants of the golden cycle model (golden/sequencer.py).

The engine's ``cycles`` counter is checked against ``golden.sequencer.layer_cycles`` by simulation
(tests/hdl/test_engine.py, tb/), the controller's against ``golden.controller.program_cycles``
(tests/hdl/test_controller.py); these tests point at the stages when a sum no longer matches. The MAC array's
latencies are checked in tests/hdl/test_mac_array.py.
"""

from golden.controller import CHECK_LATENCY, DESCRIPTOR_LATENCY, LAUNCH_LATENCY, LAYER_OVERHEAD, STORE_LATENCY
from golden.sequencer import (ADD_SEQUENCER_LATENCY, ADD_WRITE_LATENCY, FETCH_LATENCY, SEQUENCER_LATENCY,
                              TABLE_LATENCY, WRITE_LATENCY)
from hdl.add import AddSequencer, AddUnit
from hdl.controller import Controller
from hdl.dsp import Multiplier
from hdl.engine import Engine
from hdl.memory import ActivationMemory, BiasMemory, TableMemory, WeightMemory
from hdl.requant import ROUNDING_SHIFT_LATENCY, Requantizer
from hdl.sequencer import Sequencer


def test_sequencer_stages_add_up_to_its_latency():
    stages = (Sequencer.SETUP_LATENCY, Sequencer.STEP_LATENCY, Sequencer.ROW_LATENCY, Sequencer.ADDRESS_LATENCY)
    assert sum(stages) == Sequencer.latency == SEQUENCER_LATENCY


def test_fetch_waits_for_the_slower_memory():
    assert max(ActivationMemory.latency, WeightMemory.latency) == Engine.fetch_latency == FETCH_LATENCY


def test_write_stages_add_up_to_the_write_latency():
    stages = (Engine.LOCATE_LATENCY, BiasMemory.latency, Engine.BIAS_ADD_LATENCY, Requantizer.latency,
              TableMemory.latency, Engine.WRITE_STAGE_LATENCY)
    assert TableMemory.latency == TABLE_LATENCY
    assert sum(stages) == Engine.write_latency == WRITE_LATENCY


def test_controller_stages_add_up_to_its_layer_overhead():
    stages = (Controller.DESCRIPTOR_LATENCY, Controller.CHECK_LATENCY, Controller.LAUNCH_LATENCY,
              Controller.STORE_LATENCY)
    assert stages == (DESCRIPTOR_LATENCY, CHECK_LATENCY, LAUNCH_LATENCY, STORE_LATENCY)
    assert sum(stages) == Controller.LAYER_OVERHEAD == LAYER_OVERHEAD


def test_add_stages_add_up_to_the_add_latencies():
    assert AddSequencer.latency == ADD_SEQUENCER_LATENCY
    # AddUnit: centred operand, the multipliers with their products' fabric copies, the high half with the
    # requantizer's rounding right shift, sum.
    assert 1 + Multiplier.LATENCY + 1 + ROUNDING_SHIFT_LATENCY + 1 == AddUnit.latency
    assert AddUnit.latency + Requantizer.latency + TableMemory.latency + Engine.WRITE_STAGE_LATENCY \
        == Engine.add_write_latency == ADD_WRITE_LATENCY
