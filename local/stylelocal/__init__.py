"""The whole system on one machine: moto for AWS, a local WebSocket gateway, Lambda and Batch."""
