"""A real S3 API server on 127.0.0.1 for the tests: moto's standalone server (``python -m moto.server``) in its own
process, with authentication ON (wrong credentials are refused as AWS would), one IAM user allowed everything, and
buckets made on demand.

The tests talk to it only through the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``): exactly what a user sets for MinIO or any S3-compatible store.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """A started server: ``endpoint`` (http://127.0.0.1:PORT) and the credentials of its one user."""

    process: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str

    @property
    def env(self) -> dict[str, str]:
        """The environment a client of this server needs."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=REGION)

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (if missing); returns ``s3://name``."""
        c = self.client()
        if name not in {b["Name"] for b in c.list_buckets().get("Buckets", [])}:
            c.create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(timeout: float = 60.0) -> S3Server:
    """Start the server, wait until it answers, create the user and its access key (the 3 unauthenticated calls
    ``INITIAL_NO_AUTH_ACTION_COUNT`` allows; every later request must be signed)."""
    import boto3

    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the S3 test server (moto) did not start on port {port}")
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
                       region_name=REGION)
    iam.create_user(UserName="logitfuse")
    key = iam.create_access_key(UserName="logitfuse")["AccessKey"]
    iam.put_user_policy(UserName="logitfuse", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return S3Server(proc, endpoint, key["AccessKeyId"], key["SecretAccessKey"])
