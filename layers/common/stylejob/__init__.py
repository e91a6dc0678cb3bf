"""The job, described once: what TRANSFER_STYLE starts, what the state machine carries, what a
worker takes from the work queue and what it sends back.

Shipped in the Lambda layer (layers/common) and in the worker's image, so that every process that
handles a job reads it with the same models:

- `stylejob.keys`: the S3 key layout (no dependencies: the deploy tooling reads it too);
- `stylejob.job`: the job's options (bounds, preset names), the job message itself (the state
  machine's execution input), the work item a worker receives, the task's outcome and the names
  of its failures;
- `stylejob.messages`: what a worker puts on the results queue for the notifier;
- `stylejob.sizes`: the sizes offered on each device and a painting's work, for estimates of its time.

Import the submodule you need; this package itself imports nothing.
"""
