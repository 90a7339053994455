"""The step catalogue: the 29 steps of the OpenStack boot flow as data.

This is the one source of truth for step numbers, phases, the service a step runs in and the
transport it uses (see ``shared/docs/boot-flow.md``). Services open a step's span through
:func:`harness.telemetry.step_span` with a :class:`Step` member; the analysis maps spans to phases
through :data:`CATALOGUE`. Nothing else hard-codes a step number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(str, enum.Enum):
    """Latency phases a boot is broken down into (boot-flow.md, last table column)."""

    AUTH = "auth"
    API = "api"
    TOKEN_VALIDATION = "token_validation"
    SCHEDULING = "scheduling"
    INSTANCE_INFO = "instance_info"
    IMAGE = "image"
    NETWORK = "network"
    VOLUME = "volume"
    SPAWN = "spawn"


#: Phases grouped as the analysis reports them ("resource acquisition" is image+network+volume).
RESOURCE_ACQUISITION = (Phase.IMAGE, Phase.NETWORK, Phase.VOLUME)


class Transport(str, enum.Enum):
    REST = "REST"
    AMQP = "AMQP"
    SQL = "SQL"
    LOCAL = "local"


class Step(enum.IntEnum):
    """Every step of the boot flow, numbered as in the seed."""

    AUTH_REQUEST = 1
    AUTH_ISSUE_TOKEN = 2
    BOOT_REQUEST = 3
    API_VALIDATE_TOKEN = 4
    KEYSTONE_VALIDATE_TOKEN = 5
    API_DB_LOOKUP = 6
    API_DB_CREATE_INSTANCE = 7
    SCHEDULE_CALL = 8
    SCHEDULER_RECEIVE = 9
    SCHEDULER_SELECT_HOST = 10
    SCHEDULER_CLAIM_HOST = 11
    SCHEDULER_CAST_BUILD = 12
    COMPUTE_RECEIVE_BUILD = 13
    COMPUTE_CALL_CONDUCTOR = 14
    CONDUCTOR_RECEIVE = 15
    CONDUCTOR_LOOKUP_INSTANCE = 16
    CONDUCTOR_DB_READ = 17
    CONDUCTOR_REPLY = 18
    COMPUTE_RECEIVE_INSTANCE_INFO = 19
    COMPUTE_GET_IMAGE = 20
    GLANCE_VALIDATE_TOKEN = 21
    GLANCE_RETURN_IMAGE = 22
    COMPUTE_GET_NETWORK = 23
    NEUTRON_VALIDATE_TOKEN = 24
    NEUTRON_RETURN_NETWORK = 25
    COMPUTE_GET_VOLUME = 26
    CINDER_VALIDATE_TOKEN = 27
    CINDER_RETURN_VOLUME = 28
    SPAWN = 29


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the seed says of one step; ``span_name`` is the low-cardinality name its span gets."""

    step: Step
    span_name: str
    phase: Phase
    service: str
    transport: Transport
    description: str
    queue_wait: bool = False  # a message taken from a queue: its span starts when the message was sent


def _s(step, span_name, phase, service, transport, description, queue_wait=False) -> StepInfo:
    return StepInfo(step, span_name, phase, service, transport, description, queue_wait)


P, T = Phase, Transport
CATALOGUE: dict[Step, StepInfo] = {
    info.step: info
    for info in (
        _s(Step.AUTH_REQUEST, "POST /v3/auth/tokens", P.AUTH, "keystone", T.REST,
           "client asks Keystone for authentication"),
        _s(Step.AUTH_ISSUE_TOKEN, "keystone.issue_token", P.AUTH, "keystone", T.REST,
           "Keystone checks the credentials and issues a token"),
        _s(Step.BOOT_REQUEST, "POST /servers", P.API, "nova-api", T.REST,
           "client sends 'boot instance' with the token"),
        _s(Step.API_VALIDATE_TOKEN, "GET /v3/auth/tokens", P.TOKEN_VALIDATION, "nova-api", T.REST,
           "nova-api asks Keystone to validate the token"),
        _s(Step.KEYSTONE_VALIDATE_TOKEN, "keystone.validate_token", P.TOKEN_VALIDATION, "keystone",
           T.REST, "Keystone validates it and returns the auth and the user's roles"),
        _s(Step.API_DB_LOOKUP, "SELECT nova.flavors", P.API, "nova-api", T.SQL,
           "nova-api talks to the DB (flavor, quota)"),
        _s(Step.API_DB_CREATE_INSTANCE, "INSERT nova.instances", P.API, "nova-api", T.SQL,
           "the new instance's DB record is initialised"),
        _s(Step.SCHEDULE_CALL, "call scheduler", P.SCHEDULING, "nova-api", T.AMQP,
           "nova-api asks nova-scheduler for a host (rpc.call)"),
        _s(Step.SCHEDULER_RECEIVE, "receive scheduler", P.SCHEDULING, "nova-scheduler", T.AMQP,
           "nova-scheduler takes the request from the MQ", queue_wait=True),
        _s(Step.SCHEDULER_SELECT_HOST, "nova.scheduler.select_destinations", P.SCHEDULING,
           "nova-scheduler", T.SQL,
           "nova-scheduler reads compute resources from the DB and runs the algorithm"),
        _s(Step.SCHEDULER_CLAIM_HOST, "UPDATE nova.compute_nodes", P.SCHEDULING, "nova-scheduler",
           T.SQL, "nova-scheduler claims the host and writes it into the instance record"),
        _s(Step.SCHEDULER_CAST_BUILD, "cast compute.{host}", P.SCHEDULING, "nova-scheduler", T.AMQP,
           "nova-scheduler sends the create request to nova-compute (rpc.cast)"),
        _s(Step.COMPUTE_RECEIVE_BUILD, "receive compute.{host}", P.INSTANCE_INFO, "nova-compute", T.AMQP,
           "nova-compute takes the create message from its queue", queue_wait=True),
        _s(Step.COMPUTE_CALL_CONDUCTOR, "call conductor", P.INSTANCE_INFO, "nova-compute", T.AMQP,
           "nova-compute asks nova-conductor for the instance info (rpc.call)"),
        _s(Step.CONDUCTOR_RECEIVE, "receive conductor", P.INSTANCE_INFO, "nova-conductor", T.AMQP,
           "nova-conductor takes that request from the MQ", queue_wait=True),
        _s(Step.CONDUCTOR_LOOKUP_INSTANCE, "nova.conductor.instance_get", P.INSTANCE_INFO,
           "nova-conductor", T.LOCAL, "nova-conductor looks the instance up from the message"),
        _s(Step.CONDUCTOR_DB_READ, "SELECT nova.instances", P.INSTANCE_INFO, "nova-conductor", T.SQL,
           "nova-conductor reads the instance info from the DB"),
        _s(Step.CONDUCTOR_REPLY, "send reply", P.INSTANCE_INFO, "nova-conductor", T.AMQP,
           "nova-conductor sends the instance info back as a message"),
        _s(Step.COMPUTE_RECEIVE_INSTANCE_INFO, "receive reply", P.INSTANCE_INFO, "nova-compute",
           T.AMQP, "nova-compute takes that message from its queue", queue_wait=True),
        _s(Step.COMPUTE_GET_IMAGE, "nova.compute.image_get", P.IMAGE, "nova-compute", T.REST,
           "nova-compute gets a token and asks glance-api for the image"),
        _s(Step.GLANCE_VALIDATE_TOKEN, "GET /v3/auth/tokens", P.TOKEN_VALIDATION, "glance-api",
           T.REST, "glance-api validates the token with Keystone"),
        _s(Step.GLANCE_RETURN_IMAGE, "glance.image_get", P.IMAGE, "glance-api", T.REST,
           "valid: glance-api returns the image info (its URL)"),
        _s(Step.COMPUTE_GET_NETWORK, "nova.compute.allocate_network", P.NETWORK, "nova-compute", T.REST,
           "nova-compute gets a token and asks neutron-server for the network info"),
        _s(Step.NEUTRON_VALIDATE_TOKEN, "GET /v3/auth/tokens", P.TOKEN_VALIDATION, "neutron-server",
           T.REST, "neutron-server validates the token with Keystone"),
        _s(Step.NEUTRON_RETURN_NETWORK, "neutron.create_port", P.NETWORK, "neutron-server", T.REST,
           "valid: neutron-server allocates the port and returns the network info"),
        _s(Step.COMPUTE_GET_VOLUME, "nova.compute.volume_get", P.VOLUME, "nova-compute",
           T.REST, "nova-compute gets a token and asks cinder-api for the persistent storage info"),
        _s(Step.CINDER_VALIDATE_TOKEN, "GET /v3/auth/tokens", P.TOKEN_VALIDATION, "cinder-api",
           T.REST, "cinder-api validates the token with Keystone"),
        _s(Step.CINDER_RETURN_VOLUME, "cinder.attachments_get", P.VOLUME, "cinder-api", T.REST,
           "valid: cinder-api returns the volume info"),
        _s(Step.SPAWN, "nova.virt.spawn", P.SPAWN, "nova-compute", T.LOCAL,
           "nova-compute calls the virt driver to create the VM"),
    )
}
del P, T

assert len(CATALOGUE) == 29 and list(CATALOGUE) == sorted(CATALOGUE)

#: Span attribute names every step span carries.
ATTR_STEP = "openstack.boot.step"
ATTR_PHASE = "openstack.boot.phase"
#: Token fetches inside steps 20, 23 and 26 carry this phase (boot-flow.md: part of token validation).
TOKEN_FETCH_PHASE = Phase.TOKEN_VALIDATION


def info(step: Step | int) -> StepInfo:
    return CATALOGUE[Step(step)]


def phase_of(step: int | None) -> Phase | None:
    """The phase of a step number, or None for spans that are not boot steps."""
    if step is None:
        return None
    try:
        return CATALOGUE[Step(int(step))].phase
    except ValueError:
        return None
