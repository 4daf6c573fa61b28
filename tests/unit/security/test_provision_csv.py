"""CSV imports: any line ending is a line break, and a malformed file is refused with its line, never a crash."""

import pytest

from kernel import InvalidPayload
from security import CLI, MemorySecurityStore, SecurityService


async def test_bare_carriage_returns_end_lines() -> None:
    """A file with old Mac line endings (CR alone) imports a vehicle per line (it raised csv.Error before)."""
    service = SecurityService(MemorySecurityStore(), verify_cache_s=0)
    made = await service.provision_csv("vehicle_id,depot\rveh-a,north\rveh-b,south\r", "acme", actor=CLI)
    assert [p.vehicle_id for p in made] == ["veh-a", "veh-b"]


@pytest.mark.parametrize("text", ['vehicle_id\n"veh-a\n', 'vehicle_id\nveh-a,"x"y\n'])
async def test_malformed_csv_is_refused_with_its_line(text: str) -> None:
    """A stray or unterminated quote is a bad_csv refusal naming the line; nothing is provisioned."""
    store = MemorySecurityStore()
    service = SecurityService(store, verify_cache_s=0)
    with pytest.raises(InvalidPayload) as refused:
        await service.provision_csv(text, "acme", actor=CLI)
    assert refused.value.reason == "bad_csv"
    assert "line" in refused.value.detail
    assert store.credentials == {}
