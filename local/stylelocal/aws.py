"""AWS on this machine: a moto server in this process, holding the resources of template.yaml.

    server = start_moto()                       # 127.0.0.1, a free port; fixes installed
    aws = LocalAws(server.endpoint).create()    # tables, bucket, queues, Batch, state machine
    aws.client("s3"), aws.refs["ImagesBucket"], aws.environment("NotifyFunction")
    server.stop()

Names follow the template: a table, a queue or a role is named by its logical id, the bucket is
"<logical id in lower case>-local", and resources whose name the template sets (the Batch job
queue and job definition, "${AWS::StackName}-gpu" and "-worker") get exactly that name with the
stack called "local", so that the state machine's DefinitionSubstitutions find them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
import botocore.session
import requests
from botocore.model import ListShape, MapShape, Shape, StructureShape
from moto.server import ThreadedMotoServer

from . import iam, moto_fixes, template
from .template import ACCOUNT_ID, ROOT, Resolver

REGION = "us-east-1"
# moto accepts any credentials; these never reach AWS because every client has a local endpoint
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
# Each function and the worker sign as a principal of their own (the access key names it), so that
# the local S3 can answer each as S3 answers that principal's role (moto_fixes' s3_missing_keys).
PRINCIPAL_KEY_PREFIX = "LOCAL-"
WORKER_IMAGE = "stylize-worker:local"  # WorkerImageUri has no default; locally no image is pulled
SFN_CONFIG = "/moto-api/config"

log = logging.getLogger(__name__)

# moto's EC2 loads its catalogue of default AMIs whenever its backend starts (after every reset):
# 0.3 s that the Batch network here pays for nothing. moto reads this when it runs in this process.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@dataclass(eq=False)  # a server is itself, whatever its fields
class MotoServer:
    """A moto server running in a thread of this process (`start_moto`). Every server in one
    process shares moto's state (its backends and its configuration are process-wide)."""

    host: str
    port: int
    _server: ThreadedMotoServer = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stops serving. The last server of the process to stop also undoes what start_moto
        changed: Step Functions execution off, MOTO_PORT as it was, the moto fixes removed;
        until then MOTO_PORT names a server that still runs."""
        with _servers_lock:
            if self not in _servers:
                return
            _servers.remove(self)
            last = not _servers
            if last:
                try:
                    set_state_machine_execution(self.endpoint, False)
                except requests.RequestException as failure:  # stopping must not fail on a busy server
                    log.warning("could not turn Step Functions execution off: %s", failure)
            self._server.stop()
            if not last:
                os.environ["MOTO_PORT"] = str(_servers[-1].port)
                return
            if _before.moto_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = _before.moto_port
            moto_fixes.uninstall(_before.fixes)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class _Before:
    """What the first running server changed in this process, to undo when the last stops."""

    moto_port: str | None = None
    fixes: list[str] = field(default_factory=list)


_servers: list[MotoServer] = []
_servers_lock = threading.Lock()
_before = _Before()


def set_state_machine_execution(endpoint: str, enabled: bool) -> None:
    """moto's switch between recording executions and running their definitions."""
    response = requests.post(
        f"{endpoint}{SFN_CONFIG}", json={"stepfunctions": {"execute_state_machine": enabled}}, timeout=10
    )
    response.raise_for_status()


def start_moto(host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> MotoServer:
    """A moto server on host:port (0 = a free port) in a thread of this process, with the moto
    fixes installed (stylelocal.moto_fixes: refuses any moto but the pinned version) and Step
    Functions executing state machines. Its interpreter calls the other services back at
    localhost:$MOTO_PORT, so MOTO_PORT is set to this server's port. `quiet` keeps werkzeug from
    logging every request (the .sync poller alone makes two a second)."""
    with _servers_lock:
        installed = moto_fixes.install()
        if not _servers:
            _before.moto_port, _before.fixes = os.environ.get("MOTO_PORT"), []
        _before.fixes += installed
        if quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        server.start()
        bound_host, bound_port = server.get_host_and_port()
        moto = MotoServer(bound_host, bound_port, server)
        _servers.append(moto)
    os.environ["MOTO_PORT"] = str(bound_port)
    try:
        set_state_machine_execution(moto.endpoint, True)
    except BaseException:
        moto.stop()
        raise
    return moto


def principal_credentials(principal: str) -> dict[str, str]:
    """Fake credentials that name a principal of the template: a function (its role) or an
    AWS::IAM::Role, by logical id. The secret is the fake one; only the key id differs."""
    return {**FAKE_CREDENTIALS, "AWS_ACCESS_KEY_ID": f"{PRINCIPAL_KEY_PREFIX}{principal}"}


def principal_of(access_key: str) -> str | None:
    """The principal whose credentials carry this access key id; None for any other key."""
    return access_key.removeprefix(PRINCIPAL_KEY_PREFIX) if access_key.startswith(PRINCIPAL_KEY_PREFIX) else None


# --- template properties as API requests -----------------------------------------------------


@cache
def _operation_input(service: str, operation: str) -> StructureShape:
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    assert shape is not None
    return shape


def api_request(service: str, operation: str, properties: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation properties (PascalCase, numbers as strings) as the API operation's request
    (its member names and types), guided by botocore's model of the operation. A property that
    the operation does not have raises KeyError, so that a template change cannot be dropped
    silently."""
    return _convert(properties, _operation_input(service, operation), operation)


def _convert(value: Any, shape: Shape, where: str) -> Any:
    if isinstance(shape, StructureShape):
        members = {name.lower(): name for name in shape.members}
        converted = {}
        for key, item in value.items():
            member = members.get(key.lower())
            if member is None:
                raise KeyError(f"{where}: {key} is not a member of {shape.name}")
            converted[member] = _convert(item, shape.members[member], f"{where}.{key}")
        return converted
    if isinstance(shape, ListShape):
        return [_convert(item, shape.member, where) for item in value]
    if isinstance(shape, MapShape):  # tags and the like: the keys are data, not member names
        return {key: _convert(item, shape.value, where) for key, item in value.items()}
    if shape.type_name in ("integer", "long"):
        return int(value)
    if shape.type_name in ("float", "double"):
        return float(value)
    if shape.type_name == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return str(value) if shape.type_name == "string" else value


# AWS::SQS::Queue properties that are queue attributes of the same name (CloudFormation spells
# them as SQS does); any other property is refused, so that a template change is never dropped.
_QUEUE_ATTRIBUTES = {
    "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout", "SqsManagedSseEnabled", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds", "FifoQueue", "ContentBasedDeduplication",
}  # fmt: skip


def queue_attributes(properties: dict[str, Any]) -> dict[str, str]:
    """A queue's CloudFormation properties as CreateQueue/SetQueueAttributes attributes (strings;
    policies as JSON)."""
    unknown = set(properties) - _QUEUE_ATTRIBUTES
    if unknown:
        raise KeyError(f"AWS::SQS::Queue properties not supported locally: {sorted(unknown)}")
    return {key: _attribute(value) for key, value in properties.items()}


def _attribute(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


class LocalAws:
    """The template's resources created in a (reset) moto server.

    `refs` and `attributes` hold what !Ref and !GetAtt give for each created resource, `resolve`
    evaluates intrinsic functions against them, `environment(logical_id)` is what `sam local
    invoke` gives a function, and `overrides` replaces environment values with local stand-ins
    (e.g. WEBSOCKET_ENDPOINT -> the local gateway's @connections URL)."""

    def __init__(self, endpoint: str, overrides: dict[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.region = REGION
        self.overrides = overrides or {}  # environment values that point at local stand-ins
        self.refs: dict[str, Any] = {"WorkerImageUri": WORKER_IMAGE}
        self.attributes: dict[tuple[str, str], Any] = {}

    def client(self, service: str) -> Any:
        """A boto3 client for moto (fake credentials: nothing here may reach AWS)."""
        return _client(service, self.endpoint)

    def create(self) -> LocalAws:
        """Every resource of the template that the system uses locally: tables, the bucket,
        queues, the state machine, the Batch network, roles, compute environment, job queue and
        job definition. The WebSocket API, CloudFront and the layer only get the values
        their Refs and attributes give (the local gateway and file server stand in for them)."""
        self._tables()
        self._buckets()
        self._queues()
        self.refs["WebSocketApi"] = "localws"
        self.attributes[("Distribution", "DomainName")] = "cdn.local.test"
        self.refs["CommonLayer"] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:common:1"
        self._log_groups()
        self._functions()
        self._state_machines()
        self._batch()  # after the state machine: the worker's role names it (the task tokens it answers)
        self.register_principals()
        return self

    @property
    def resolve(self) -> Resolver:
        return Resolver(self.refs, self.attributes, REGION)

    def _tables(self) -> None:
        dynamodb = self.client("dynamodb")
        for name, resource in template.resources("AWS::DynamoDB::Table").items():
            props = resource["Properties"]
            create: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": "PAY_PER_REQUEST",
            }
            if "GlobalSecondaryIndexes" in props:
                create["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            dynamodb.create_table(**create)
            if ttl := props.get("TimeToLiveSpecification"):
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
            self.refs[name] = name
            self.attributes[(name, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"

    def _buckets(self) -> None:
        s3 = self.client("s3")
        for name in template.resources("AWS::S3::Bucket"):
            bucket = f"{name.lower()}-local"
            s3.create_bucket(Bucket=bucket)
            self.refs[name] = bucket
            self.attributes[(name, "Arn")] = f"arn:aws:s3:::{bucket}"
            self.attributes[(name, "RegionalDomainName")] = f"{bucket}.s3.{REGION}.amazonaws.com"

    def _queues(self) -> None:
        """Every queue with the template's properties as queue attributes (visibility timeout,
        retention, encryption, the redrive policy to its dead-letter queue). Redrive policies
        name other queues' ARNs, so they are set once every queue exists."""
        sqs = self.client("sqs")
        queues = template.resources("AWS::SQS::Queue")
        for name, resource in queues.items():
            props = {k: v for k, v in resource.get("Properties", {}).items() if k != "RedrivePolicy"}
            url = sqs.create_queue(QueueName=name, Attributes=queue_attributes(props))["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.refs[name] = url
            self.attributes[(name, "QueueUrl")] = url
            self.attributes[(name, "Arn")] = arn
            self.attributes[(name, "QueueName")] = name
        for name, resource in queues.items():
            if redrive := resource.get("Properties", {}).get("RedrivePolicy"):
                attributes = queue_attributes({"RedrivePolicy": self.resolve(redrive)})
                sqs.set_queue_attributes(QueueUrl=self.refs[name], Attributes=attributes)

    def _log_groups(self) -> None:
        """Log groups are not created here (the functions and the worker log to the terminal);
        their Refs are their names, which name the functions (a function's Ref is its name)."""
        for name in template.resources("AWS::Serverless::Function"):
            self.refs.setdefault(name, name)
        for name, resource in template.resources("AWS::Logs::LogGroup").items():
            self.refs[name] = self.resolve(resource["Properties"]["LogGroupName"])

    # --- Batch: what the state machine's batch:submitJob.sync needs to find ----------------

    def _batch(self) -> None:
        self._batch_network()
        self._roles()
        batch = self.client("batch")
        # moto wants a service role; in AWS the template leaves it out and Batch uses its
        # service-linked role, which is what is created here
        service_role = self.client("iam").create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"]
        for name, resource in template.resources("AWS::Batch::ComputeEnvironment").items():
            request = api_request("batch", "CreateComputeEnvironment", self.resolve(resource["Properties"]))
            request.setdefault("computeEnvironmentName", name)
            request.setdefault("serviceRole", service_role["Arn"])
            arn = batch.create_compute_environment(**request)["computeEnvironmentArn"]
            self.refs[name] = arn
            self.attributes[(name, "ComputeEnvironmentArn")] = arn
        for name, resource in template.resources("AWS::Batch::JobQueue").items():
            request = api_request("batch", "CreateJobQueue", self.resolve(resource["Properties"]))
            request.setdefault("jobQueueName", name)
            arn = batch.create_job_queue(**request)["jobQueueArn"]
            self.refs[name] = arn
            self.attributes[(name, "JobQueueArn")] = arn
        for name, resource in template.resources("AWS::Batch::JobDefinition").items():
            request = api_request("batch", "RegisterJobDefinition", self.resolve(resource["Properties"]))
            request.setdefault("jobDefinitionName", name)
            arn = batch.register_job_definition(**request)["jobDefinitionArn"]
            self.refs[name] = arn

    def _batch_network(self) -> None:
        """The VPC, subnets and security group that the compute environment names (moto checks
        that they exist). Internet gateway and routes are left out: nothing travels locally."""
        ec2 = self.client("ec2")
        for name, resource in template.resources("AWS::EC2::VPC").items():
            props = self.resolve(resource["Properties"])
            vpc = ec2.create_vpc(CidrBlock=props["CidrBlock"], TagSpecifications=_tags("vpc", props))["Vpc"]
            self.refs[name] = vpc["VpcId"]
        for name, resource in template.resources("AWS::EC2::Subnet").items():
            props = self.resolve(resource["Properties"])
            subnet = ec2.create_subnet(
                VpcId=props["VpcId"],
                CidrBlock=props["CidrBlock"],
                AvailabilityZone=props["AvailabilityZone"],
                TagSpecifications=_tags("subnet", props),
            )["Subnet"]
            self.refs[name] = subnet["SubnetId"]
        for name, resource in template.resources("AWS::EC2::SecurityGroup").items():
            props = self.resolve(resource["Properties"])
            group_id = ec2.create_security_group(
                GroupName=f"local-{name}",
                Description=props["GroupDescription"],
                VpcId=props["VpcId"],
                TagSpecifications=_tags("security-group", props),
            )["GroupId"]
            self.refs[name] = group_id
            self.attributes[(name, "GroupId")] = group_id

    def _roles(self) -> None:
        """The Batch instance role and profile, and the worker's job role with its policy (the
        AWS managed policies are not attached: moto does not load them by default)."""
        iam = self.client("iam")
        for name, resource in template.resources("AWS::IAM::Role").items():
            props = self.resolve(resource["Properties"])
            role = iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
            )["Role"]
            for policy in props.get("Policies", []):
                iam.put_role_policy(
                    RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
                )
            self.refs[name] = name
            self.attributes[(name, "Arn")] = role["Arn"]
            self.attributes[(name, "RoleId")] = role["RoleId"]
        for name, resource in template.resources("AWS::IAM::InstanceProfile").items():
            props = self.resolve(resource["Properties"])
            profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            for role in props.get("Roles", []):
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
            self.refs[name] = name
            self.attributes[(name, "Arn")] = profile["Arn"]

    def _functions(self) -> None:
        """Only their names and ARNs (a state machine invokes one by ARN): the local Lambda
        runtime runs them, registered with moto_fixes.set_lambda_invoker."""
        for name in template.resources("AWS::Serverless::Function"):
            self.refs[name] = name
            self.attributes[(name, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"

    def _state_machines(self) -> None:
        sfn = self.client("stepfunctions")
        for name, resource in template.resources("AWS::Serverless::StateMachine").items():
            props = resource["Properties"]
            definition = (ROOT / props["DefinitionUri"]).read_text()
            for key, value in self.resolve(props.get("DefinitionSubstitutions", {})).items():
                definition = definition.replace("${" + key + "}", str(value))
            arn = sfn.create_state_machine(
                name=name, definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/local"
            )["stateMachineArn"]
            self.refs[name] = arn
            self.attributes[(name, "Name")] = name  # what execution ARNs are made of (DELETE_JOB's policy)

    def register_principals(self) -> None:
        """What each principal's identity policy allows, for the local S3 (moto_fixes'
        s3_missing_keys): every function's inline statements, and every role that has only inline
        policies (the worker's; the Batch instance role has AWS managed ones and calls no S3)."""
        principals = list(template.resources("AWS::Serverless::Function"))
        principals += [name for name, role in template.resources("AWS::IAM::Role").items()
                       if not role["Properties"].get("ManagedPolicyArns")]  # fmt: skip
        moto_fixes.set_principals({name: iam.identity_statements(name, self.resolve) for name in principals})

    def environment(self, logical_id: str) -> dict[str, str]:
        """What `sam local invoke` puts in the function's environment, with local endpoints: the
        template's variables (Globals merged, intrinsics resolved, `overrides` applied), the
        Lambda runtime's variables, fake credentials naming the function (principal_credentials)
        and AWS_ENDPOINT_URL = moto."""
        props = template.function(logical_id)
        variables = {k: str(v) for k, v in self.resolve(props["Environment"]["Variables"]).items()}
        return {
            **variables,
            **{k: v for k, v in self.overrides.items() if k in variables},
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(props.get("Timeout", 3)),
            "AWS_SAM_LOCAL": "true",  # as sam local sets it: powertools' tracer stays off
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **principal_credentials(logical_id),  # its role, as Lambda gives it
            "AWS_ENDPOINT_URL": self.endpoint,
            "_HANDLER": props["Handler"],
        }


_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, endpoint: str) -> Any:
    """One client per service and endpoint, shared (boto3's clients are thread-safe): making one
    costs up to 0.2 s (EC2's), and a LocalAws is made for every test."""
    with _clients_lock:
        if (service, endpoint) not in _clients:
            _clients[(service, endpoint)] = boto3.session.Session().client(
                service,
                region_name=REGION,
                endpoint_url=endpoint,
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            )
        return _clients[(service, endpoint)]


def _tags(resource_type: str, props: dict[str, Any]) -> list[dict[str, Any]]:
    tags = props.get("Tags", [])
    return [{"ResourceType": resource_type, "Tags": tags}] if tags else []
