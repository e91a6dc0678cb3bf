"""The harness itself: the template's resources exist locally and functions get their environment."""

from styleservice.jobs import Jobs  # noqa: F401 - the layer is importable from tests

from . import template


def test_every_table_bucket_and_queue_exists(aws):
    tables = aws.client("dynamodb").list_tables()["TableNames"]
    assert sorted(tables) == sorted(template.resources("AWS::DynamoDB::Table"))
    feed = aws.client("dynamodb").describe_table(TableName="JobsTable")["Table"]["GlobalSecondaryIndexes"]
    assert [index["IndexName"] for index in feed] == ["Feed"]
    assert aws.client("s3").list_buckets()["Buckets"][0]["Name"] == "imagesbucket-local"
    assert len(aws.client("sqs").list_queues()["QueueUrls"]) == len(template.resources("AWS::SQS::Queue"))


def test_function_environment_comes_from_the_template(aws):
    env = aws.environment("NotifyFunction")
    assert env["JOBS_TABLE"] == "JobsTable"
    assert env["CONNECTIONS_TABLE"] == "ConnectionsTable"
    assert env["PUBLIC_BASE_URL"] == "https://cdn.local.test"
    assert env["WEBSOCKET_ENDPOINT"] == "https://localws.execute-api.us-east-1.amazonaws.com/prod"
    assert env["POWERTOOLS_SERVICE_NAME"] == "style-transfer"  # from Globals
    assert env["_HANDLER"] == "app.handler"
    assert aws.environment("TransferStyleFunction")["STATE_MACHINE_ARN"].startswith("arn:aws:states:")
