"""The meter deriver on arbitrary telemetry: it never raises, and without readings never runs backwards."""

import math

from hypothesis import given
from hypothesis import strategies as st

from maintenance import MaintenanceSettings, MeterDeriver
from twin import TwinState

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=True, allow_infinity=True))
coordinate = st.one_of(st.floats(-95, 95), junk)
message = st.fixed_dictionaries(
    {},
    optional={
        "gps": st.one_of(
            st.fixed_dictionaries({"lat": coordinate, "lon": st.one_of(st.floats(-185, 185), junk)}), junk
        ),
        "speed": st.one_of(st.floats(0, 300), junk),
        "ignition": st.one_of(st.booleans(), junk),
    },
)
steps = st.lists(st.tuples(st.floats(-10, 3600, allow_nan=False), message), max_size=40)


@given(steps)
def test_gps_and_ignition_only_never_run_backwards(sequence):
    """Without the vehicle's own readings, odometer and engine hours only grow, and stay finite."""
    deriver = MeterDeriver(MaintenanceSettings(odometer_step_km=0, engine_hours_step=0))
    state = TwinState(vehicle_id="v", created_at=0.0, updated_at=0.0)
    ts, last = 1_000_000.0, (0.0, 0.0)
    for delta, data in sequence:
        ts += delta
        deriver.enrich(state, ts, data)
        odo, hours = deriver.values("v")
        assert odo is not None
        assert hours is not None
        assert math.isfinite(odo)
        assert math.isfinite(hours)
        assert odo >= last[0]
        assert hours >= last[1]
        last = (odo, hours)


@given(st.lists(st.dictionaries(st.text(max_size=12), junk, max_size=6), max_size=20))
def test_any_object_is_taken_without_raising(messages):
    """Whatever keys and values a message has, enrich returns None or a meters object."""
    deriver = MeterDeriver()
    state = TwinState(vehicle_id="v", created_at=0.0, updated_at=0.0)
    for i, data in enumerate(messages):
        out = deriver.enrich(state, 100.0 + i, data)
        assert out is None or set(out) == {"meters"}
