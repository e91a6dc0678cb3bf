"""The GPU worker that AWS Batch runs for one style-transfer job (`python -m stylize_worker`).

It reads the Step Functions execution input from JOB_JSON, downloads the content and style images
from S3, runs the `styletransfer` engine, uploads the JPEG result and reports progress and the
result on the results queue. See job.py.
"""
