"""start_moto and LocalAws: a moto server in this process, and the template's resources in it
(the Batch ones named as the state machine's DefinitionSubstitutions name them)."""

from __future__ import annotations

import json
import os
import socket

import pytest
from moto.core.config import default_user_config
from stylelocal import moto_fixes
from stylelocal.aws import FAKE_CREDENTIALS, LocalAws, api_request, start_moto
from stylelocal.template import Resolver, resources

from .conftest import wait_for_execution


def test_start_moto_serves_on_a_free_loopback_port_and_runs_state_machines():
    before = os.environ.get("MOTO_PORT")
    with start_moto() as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.endpoint == f"http://127.0.0.1:{server.port}"
        assert os.environ["MOTO_PORT"] == str(server.port)  # where the interpreter calls back
        assert moto_fixes.installed() == set(moto_fixes.FIXES)
        aws = LocalAws(server.endpoint)
        sfn = aws.client("stepfunctions")
        add = {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, 2)"}, "End": True}
        definition = {"StartAt": "Add", "States": {"Add": add}}
        arn = sfn.create_state_machine(
            name="adder", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/local"
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, name="one", input='{"a": 40}')["executionArn"]
        assert json.loads(wait_for_execution(aws, execution, 10)["output"]) == {"sum": 42}  # executed, not recorded

    assert os.environ.get("MOTO_PORT") == before
    assert moto_fixes.installed() == set()
    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0  # nothing listens any more
    server.stop()  # twice is harmless


def test_a_second_server_leaves_the_first_one_working(moto):
    second = start_moto()
    second.stop()
    assert os.environ["MOTO_PORT"] == str(moto.port)
    assert moto_fixes.installed() == set(moto_fixes.FIXES)
    assert default_user_config["stepfunctions"]["execute_state_machine"] is True  # moto's API does not show it


def test_the_batch_resources_are_the_templates_with_the_names_the_scaler_uses(aws):
    batch = aws.client("batch")
    scaler = aws.environment("ScaleWorkersFunction")
    [queue] = batch.describe_job_queues(jobQueues=[scaler["WORKER_JOB_QUEUE"]])["jobQueues"]
    assert (queue["jobQueueName"], queue["state"], queue["priority"]) == ("local-gpu", "ENABLED", 1)
    [environment] = batch.describe_compute_environments()["computeEnvironments"]
    assert queue["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
    ]
    compute = environment["computeResources"]
    assert (environment["type"], compute["type"], compute["minvCpus"], compute["maxvCpus"]) == ("MANAGED", "EC2", 0, 16)
    assert compute["instanceTypes"] == ["g6.xlarge", "g5.xlarge"]
    assert compute["allocationStrategy"] == "BEST_FIT_PROGRESSIVE"  # the UseSpot condition is false by default
    assert sorted(compute["subnets"]) == sorted([aws.refs["BatchSubnetA"], aws.refs["BatchSubnetB"]])

    [definition] = batch.describe_job_definitions(jobDefinitionName=scaler["WORKER_JOB_DEFINITION"])["jobDefinitions"]
    container = definition["containerProperties"]
    assert container["command"] == ["python", "-m", "stylize_worker"]
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "IMAGES_BUCKET": aws.refs["ImagesBucket"],
        "RESULTS_QUEUE_URL": aws.refs["ResultsQueue"],
        "JOBS_TABLE": aws.refs["JobsTable"],
        "WORK_QUEUE_URL": aws.refs["WorkQueue"],
        "WORKERS_TABLE": aws.refs["WorkersTable"],
        "WORKER_IDLE_SECONDS": "300",
        "MIN_WARM_WORKERS": "0",
        "MAX_ATTEMPTS": "2",
        "WORKER_LEASE_SECONDS": "30",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {
        "VCPU": "4",
        "MEMORY": "15000",
        "GPU": "1",
    }
    assert container["jobRoleArn"].endswith(":role/WorkerJobRole")
    assert definition["timeout"] == {"attemptDurationSeconds": 86400}
    assert definition["retryStrategy"]["attempts"] == 1
    policy = aws.client("iam").get_role_policy(RoleName="WorkerJobRole", PolicyName="worker")["PolicyDocument"]
    assert f"arn:aws:s3:::{aws.refs['ImagesBucket']}/styles/*" in policy["Statement"][0]["Resource"]


def test_a_function_gets_its_template_environment_with_local_endpoints_and_fake_credentials(aws):
    aws.overrides.update({"WEBSOCKET_ENDPOINT": "http://127.0.0.1:9/local", "NOT_A_VARIABLE": "x"})
    env = aws.environment("NotifyFunction")
    assert env["WEBSOCKET_ENDPOINT"] == "http://127.0.0.1:9/local"
    assert "NOT_A_VARIABLE" not in env  # overrides replace the template's values, they add none
    assert env["AWS_ENDPOINT_URL"] == aws.endpoint
    # fake credentials that name the function's own role (the local S3 answers it as S3 would)
    assert {k: env[k] for k in FAKE_CREDENTIALS} == {**FAKE_CREDENTIALS, "AWS_ACCESS_KEY_ID": "LOCAL-NotifyFunction"}
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "30"
    assert env["IDEMPOTENCY_TABLE"] == "IdempotencyTable"


def test_template_properties_become_api_requests_and_unknown_ones_are_refused():
    properties = {"JobQueueName": "q", "Priority": "1", "State": "ENABLED",
                  "ComputeEnvironmentOrder": [{"Order": "1", "ComputeEnvironment": "c"}]}  # fmt: skip
    request = api_request("batch", "CreateJobQueue", properties)
    assert request == {"jobQueueName": "q", "priority": 1, "state": "ENABLED",
                       "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "c"}]}  # fmt: skip
    tagged = api_request("batch", "CreateComputeEnvironment", {"Type": "MANAGED", "Tags": {"Name": "x"}})
    assert tagged == {"type": "MANAGED", "tags": {"Name": "x"}}  # a map's keys are data
    with pytest.raises(KeyError, match="Colour is not a member"):
        api_request("batch", "CreateJobQueue", {"Colour": "blue"})


def test_the_resolver_evaluates_conditions_lists_and_availability_zones():
    resolve = Resolver({}, {}, "eu-west-1")
    assert resolve({"Ref": "GpuInstanceTypes"}) == ["g6.xlarge", "g5.xlarge"]  # CommaDelimitedList
    assert resolve({"Fn::Select": [1, {"Fn::GetAZs": ""}]}) == "eu-west-1b"
    assert resolve({"Fn::If": ["UseSpot", "spot", "on-demand"]}) == "on-demand"
    assert Resolver({"CapacityType": "SPOT"}, {}, "eu-west-1")({"Fn::If": ["UseSpot", "spot", "on-demand"]}) == "spot"
    assert resolve({"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "gpu"]]}) == "local-gpu"
    assert resolve({"Fn::Sub": "${AWS::URLSuffix}"}) == "amazonaws.com"


def test_queues_have_the_templates_properties_and_dead_letter_queue(aws):
    """Issue 12: the local results queue had the default 30 s visibility and no dead-letter queue."""
    sqs = aws.client("sqs")
    for name, resource in resources("AWS::SQS::Queue").items():
        props = resource["Properties"]
        got = sqs.get_queue_attributes(QueueUrl=aws.refs[name], AttributeNames=["All"])["Attributes"]
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in props:
                assert got[key] == str(props[key]), (name, key)
        if "RedrivePolicy" in props:
            redrive = json.loads(got["RedrivePolicy"])
            target = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert redrive["deadLetterTargetArn"] == aws.attributes[(target, "Arn")]
            assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
    results = resources("AWS::SQS::Queue")["ResultsQueue"]["Properties"]
    assert results["VisibilityTimeout"] == 180  # six times NotifyFunction's 30 s, as Lambda advises


def test_a_message_received_too_often_goes_to_the_dead_letter_queue(aws):
    sqs = aws.client("sqs")
    url, dead = aws.refs["ResultsQueue"], aws.refs["ResultsDeadLetterQueue"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(5):  # maxReceiveCount receives, each left to time out at once
        received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0)["Messages"]
        assert received[0]["Body"] == "poison"
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []
    assert sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=1)["Messages"][0]["Body"] == "poison"


def test_unknown_queue_properties_are_refused():
    from stylelocal.aws import queue_attributes

    assert queue_attributes({"VisibilityTimeout": 60, "SqsManagedSseEnabled": True}) == {
        "VisibilityTimeout": "60", "SqsManagedSseEnabled": "true"}  # fmt: skip
    with pytest.raises(KeyError, match="Tags"):
        queue_attributes({"Tags": []})


def test_stack_parameters_from_the_command_line_reach_the_functions(aws):
    from stylelocal.__main__ import apply_parameters, parse_args

    assert aws.environment("TransferStyleFunction")["JOBS_PER_SOURCE_IP"] == "20"  # the template's default
    assert aws.environment("ScaleWorkersFunction")["MAX_WORKERS"] == "4"
    apply_parameters(aws, parse_args(["--access-key", "k3y", "--parameter", "JobsPerSourceIp=0"]), worker_slots=2)
    assert aws.environment("TransferStyleFunction")["JOBS_PER_SOURCE_IP"] == "0"
    assert aws.environment("ConnectFunction")["ACCESS_KEY"] == "k3y"
    assert aws.environment("ScaleWorkersFunction")["MAX_WORKERS"] == "2"  # what this machine can run at once
    apply_parameters(aws, parse_args(["--parameter", "MaxWorkers=3"]), worker_slots=2)
    assert aws.environment("ScaleWorkersFunction")["MAX_WORKERS"] == "3"  # unless it is given
    with pytest.raises(SystemExit):
        parse_args(["--parameter", "NoSuchParameter=1"])
