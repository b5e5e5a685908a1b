"""Fills the moto S3 server a test started, with boto3 (a client independent of the service's).

    s3.py ENDPOINT users                     -> prints {"id": ..., "secret": ...} of a user allowed
                                                s3:*, then turns moto's authentication on
    s3.py ENDPOINT mb BUCKET
    s3.py ENDPOINT put BUCKET KEY FILE
    s3.py ENDPOINT rm BUCKET KEY

Credentials, once authentication is on, come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import json
import sys
import urllib.request

import boto3
from botocore.config import Config

endpoint, command, *args = sys.argv[1:]
session = dict(
    endpoint_url=endpoint,
    region_name="eu-south-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)

if command == "users":
    # Before authentication is on, any key is accepted: make the user the service signs in as.
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **session)
    iam.create_user(UserName="cruscotto")
    iam.put_user_policy(
        UserName="cruscotto",
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="cruscotto")["AccessKey"]
    # From now on every request is checked: an unknown key or a wrong secret is refused.
    urllib.request.urlopen(
        urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            # Not a form: moto reads the count from the raw body.
            headers={"Content-Type": "text/plain"},
        )
    ).read()
    print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
    sys.exit(0)

s3 = boto3.client("s3", **session)
if command == "mb":
    (bucket,) = args
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-south-1"}
    )
elif command == "put":
    bucket, key, path = args
    s3.upload_file(path, bucket, key)
elif command == "rm":
    bucket, key = args
    s3.delete_object(Bucket=bucket, Key=key)
else:
    sys.exit(f"unknown command {command}")
