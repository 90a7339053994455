from harness.steps import CATALOGUE, RESOURCE_ACQUISITION, Phase, Step, phase_of


def test_catalogue_matches_the_seed():
    assert [int(s) for s in CATALOGUE] == list(range(1, 30))
    phases = {int(s): i.phase for s, i in CATALOGUE.items()}
    assert {n for n, p in phases.items() if p is Phase.SCHEDULING} == {8, 9, 10, 11, 12}
    assert {n for n, p in phases.items() if p is Phase.TOKEN_VALIDATION} == {4, 5, 21, 24, 27}
    assert {n for n, p in phases.items() if p in RESOURCE_ACQUISITION} == {20, 22, 23, 25, 26, 28}
    assert phases[29] is Phase.SPAWN and phases[1] is Phase.AUTH
    assert {int(s) for s, i in CATALOGUE.items() if i.queue_wait} == {9, 13, 15, 19}


def test_services_named_by_the_seed():
    svc = {int(s): i.service for s, i in CATALOGUE.items()}
    assert svc[10] == "nova-scheduler" and svc[17] == "nova-conductor" and svc[29] == "nova-compute"
    assert svc[21] == "glance-api" and svc[24] == "neutron-server" and svc[27] == "cinder-api"


def test_phase_of_handles_non_steps():
    assert phase_of(None) is None and phase_of(99) is None and phase_of(Step.SPAWN) is Phase.SPAWN
