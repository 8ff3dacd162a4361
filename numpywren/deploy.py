"""``numpywren deploy`` / ``teardown`` / ``layer build``: the AWS side of the Lambda backend, with boto3.

deploy creates or updates, idempotently:
  * an IAM role Lambda can assume, with one inline least-privilege policy: objects under
    ``s3://bucket/prefix/`` only, listing under ``prefix/`` only, and the function's own log group
    (the prefix must name a folder: not empty or ``/``, no ``*``, ``?``, ``$``, ``.`` or ``..`` parts);
  * a layer version with numpy (OpenBLAS), numexpr, cloudpickle and the numpywren worker code
    (built by ``layers/build.py``; a layer whose zip is unchanged is reused, not published again,
    and versions the function no longer uses are deleted). The zip goes to Lambda through S3 (direct
    uploads stop at 50 MB), staged at ``s3://bucket/numpywren-deploy/<layer>/<sha256>.zip``: outside
    the workers' prefix, so they cannot swap it before it is published; deleted after publishing;
  * the function (``--runtime``, default the newest we build layers for; handler
    ``numpywren.worker.lambda_handler.handler``, memory, timeout, architecture, ``NUMPYWREN_STORE`` and BLAS
    thread variables), with Lambda's own async retries off because the executor re-invokes lost calls
    itself, and a short maximum event age (``--event-age``, default 300 s; Lambda's default is 6 h) so
    an event queued when its driver died does not run hours later (the handler also drops events past
    their ``not_after`` time).
IAM changes take seconds (sometimes a minute) to reach Lambda and S3, so deploy waits them out, within
bounds (PROPAGATION_DELAYS, about 90 s): it retries creating or reconfiguring the function while Lambda
cannot assume the new role yet, and it ends by invoking the function once with a probe event (see
numpywren.worker.lambda_handler): a worker writes, reads, lists and deletes one key under ``jobs/`` of its store,
retried while S3 denies it. A job started after deploy returns therefore meets no propagation
``AccessDenied``; if the probe never succeeds, deploy fails naming what to check (``--no-verify`` skips it).
The bucket must be in the function's region (layers are published from it).
With ``--image URI`` the function is a container image instead (``layers/Dockerfile``: MKL-linked
numpy in everything; images up to 10 GB): no layer, the image's own handler command.
teardown removes all of it (not the data under the prefix).
"""
from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import importlib.util
import io
import json
import re
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from numpywren.executors.lambda_failures import bucket_arn, records_prefix
from numpywren.protocol import EVENT_VERSION

#: Lambda runtimes deploy and the layer builder (layers/build.py) support -> the Python their layers are built
#: for; the default is the newest runtime we build layers for.
RUNTIMES = {"python3.11": "3.11", "python3.12": "3.12", "python3.13": "3.13"}
RUNTIME = "python3.13"
#: AWS's schedule for Lambda runtimes we build layers for (docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html):
#: runtime -> (deprecated, function creation blocked), ISO dates. python3.11 runs on Amazon Linux 2; deploy
#: refuses it from the date Lambda stops creating functions on it (layers can still be built for tests).
RUNTIME_SCHEDULE = {"python3.11": ("2026-06-30", "2026-07-31")}
#: IAM role names are at most 64 characters (deploy's role is ``<function>-role``); Lambda function names 64,
#: descriptions 256 (AWS's IAM and Lambda quotas): checked before anything is created.
ROLE_NAME_MAX = 64
FUNCTION_NAME_MAX = 64
DESCRIPTION_MAX = 256
#: Seconds Lambda keeps an event queued before dropping it (Lambda allows 60..21600); matches the
#: executor's default ``event_age`` (numpywren.executors.aws_lambda.DEFAULT_EVENT_AGE).
EVENT_AGE = 300
HANDLER = "numpywren.worker.lambda_handler.handler"
ARCHITECTURES = ("x86_64", "arm64")
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Lambda gives one vCPU per 1769 MB of memory, at most 6.
MB_PER_VCPU = 1769
#: Layer zips on their way to Lambda (deleted after publishing): outside every prefix deploy grants.
STAGING = "numpywren-deploy"
#: A Lambda container image: an ECR repository URI with a tag or a digest (Lambda takes no other registry).
IMAGE_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")


#: Seconds between attempts while IAM changes propagate (a new role becoming assumable by Lambda, a new
#: policy reaching S3): about 90 s in all, past what AWS documents as typical; then deploy gives up.
PROPAGATION_DELAYS = (1, 2, 4, 8, 15, 15, 15, 15, 15)
#: Lambda's answers to an invoke that mean "not yet" rather than "never" (the function still settling).
NOT_READY_CODES = ("ResourceConflictException", "ResourceNotReadyException", "TooManyRequestsException")
_sleep = time.sleep  # tests count the waits instead of sleeping


class StoreAccessError(PermissionError):
    """The deployed function could not use its store (after waiting for IAM to propagate)."""


def names(function_name: str) -> dict[str, str]:
    """The AWS resource names deploy uses for a function (teardown removes exactly these)."""
    return {"function": function_name, "role": f"{function_name}-role", "policy": f"{function_name}-store-access",
            "layer": f"{function_name}-deps"}


def check_runtime(runtime: str, today: datetime.date | None = None) -> str:
    """``runtime`` if Lambda still creates functions on it; ValueError naming AWS's dates otherwise."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}")
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    if runtime in RUNTIME_SCHEDULE:
        deprecated, blocked = RUNTIME_SCHEDULE[runtime]
        if today >= datetime.date.fromisoformat(blocked):
            raise ValueError(f"Lambda's {runtime} runtime is deprecated since {deprecated} and AWS blocks creating "
                             f"functions on it since {blocked}: deploy --runtime {RUNTIME} (Amazon Linux 2023), "
                             f"with a layer built for it (numpywren layer build --runtime {RUNTIME})")
    return runtime


def check_names(function_name: str, description: str = "") -> None:
    """Lambda's and IAM's name limits, checked before anything is created (naming the offender)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", function_name or ""):
        raise ValueError(f"--function-name {function_name!r}: Lambda allows letters, digits, '-' and '_' only")
    if len(function_name) > FUNCTION_NAME_MAX:
        raise ValueError(f"--function-name {function_name!r} has {len(function_name)} characters; Lambda allows "
                         f"{FUNCTION_NAME_MAX}")
    role = names(function_name)["role"]
    if len(role) > ROLE_NAME_MAX:
        raise ValueError(f"--function-name {function_name!r} is too long: its role {role!r} would have {len(role)} "
                         f"characters, IAM allows {ROLE_NAME_MAX} (use at most {ROLE_NAME_MAX - len('-role')})")
    if len(description) > DESCRIPTION_MAX:
        raise ValueError(f"the function's description would have {len(description)} characters, Lambda allows "
                         f"{DESCRIPTION_MAX} (a shorter --bucket/--prefix): {description[:80]!r}...")


def description(store_url: str, image: bool = False) -> str:
    return f"numpywren worker for {store_url}" + (" (image)" if image else "")


def default_blas_threads(memory: int) -> int:
    """Lambda's vCPUs for a memory size, rounded up (1769 MB = 1 vCPU; 10240 MB = 6; 3008 MB sees 2 cores)."""
    return max(1, min(6, -(-memory // MB_PER_VCPU)))


def trust_policy() -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def check_prefix(prefix: str) -> str:
    """The workers' prefix without outer slashes; ValueError if it would grant more than one folder."""
    prefix = prefix.strip("/")
    if not prefix:
        raise ValueError("--prefix must name a folder of the bucket (e.g. numpywren): an empty or '/' prefix "
                         "would give the workers the whole bucket")
    if any(c in prefix for c in "*?$"):
        raise ValueError(f"--prefix {prefix!r} contains '*', '?' or '$': IAM would read them as wildcards or "
                         f"policy variables; use a plain folder name")
    if any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"--prefix {prefix!r} has an empty, '.' or '..' part; use a plain folder path")
    if prefix == STAGING or prefix.startswith(STAGING + "/"):
        raise ValueError(f"--prefix {prefix!r} is reserved: deploy stages layer zips under {STAGING}/")
    return prefix


def role_policy(bucket: str, prefix: str, function_name: str, region: str, account: str,
                partition: str = "aws") -> dict:
    """The function's only permissions: objects under ``prefix/`` of one bucket, listing there, its log group.

    ListBucket uses ``StringLike`` on ``prefix/`` and ``prefix/*``: a listing of a
    sibling (``prefix-other/``) or without a prefix is denied. So is HeadBucket
    (it carries no ``s3:prefix``), and HEAD/GET of a missing key gets 403, not 404.
    """
    prefix = check_prefix(prefix)
    objects = f"arn:{partition}:s3:::{bucket}/{prefix}/*"
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{function_name}"
    statements = [
        {"Sid": "StoreObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": objects},
        {"Sid": "StoreListing", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{partition}:s3:::{bucket}"},
        # Lambda writes the records of failed asynchronous events (a sandbox killed for memory) to the
        # function's on-failure destination, this bucket, with the function's role
        # (numpywren.executors.lambda_failures); it checks ListBucket when the destination is set
        {"Sid": "FailureRecords", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": f"arn:{partition}:s3:::{bucket}/{records_prefix(function_name)}*"},
        {"Sid": "Logs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group, f"{log_group}:*"]},
    ]
    statements[1]["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*",
                                                                 f"{records_prefix(function_name)}*"]}}
    return {"Version": "2012-10-17", "Statement": statements}


def failure_destination(bucket: str) -> dict:
    """The function's on-failure destination for asynchronous invokes: the store's bucket, where the
    executor reads Lambda's failure records (numpywren.executors.lambda_failures)."""
    return {"OnFailure": {"Destination": bucket_arn(bucket)}}


def function_zip() -> bytes:
    """The function's own code package: a stub, deterministic bytes (the code lives in the layer)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("numpywren_function.json", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, json.dumps({"handler": HANDLER, "code": "in the numpywren layer"}, sort_keys=True))
    return buf.getvalue()


class _Aws:
    """boto3 clients for one region (and one endpoint, e.g. a moto server in tests)."""

    def __init__(self, region: str | None, endpoint_url: str | None):
        self.session = boto3.session.Session(region_name=region)
        self.region = self.session.region_name
        if not self.region:
            raise ValueError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
        self.endpoint_url = endpoint_url
        self._clients: dict = {}

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint_url)
        return self._clients[service]

    def identity(self) -> tuple[str, str]:
        arn = self.client("sts").get_caller_identity()["Arn"]
        return arn.split(":")[4], arn.split(":")[1]  # account, partition


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _check_bucket(aws: _Aws, bucket: str) -> None:
    """Before creating anything: the store's bucket must exist (deploy does not create buckets), in
    the function's region (Lambda fetches the layer zip from it, and cross-region S3 is slow and billed)."""
    try:
        aws.client("s3").head_bucket(Bucket=bucket)
        where = aws.client("s3").get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as e:
        if _code(e) in ("404", "NoSuchBucket", "NotFound"):
            raise ValueError(f"bucket {bucket!r} does not exist in {aws.region}; create it first "
                             f"(aws s3 mb s3://{bucket} --region {aws.region})") from None
        raise
    where = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(where, where)
    if where != aws.region:
        raise ValueError(f"bucket {bucket!r} is in {where}, the function would be in {aws.region}: "
                         f"deploy with --region {where}, or use a bucket in {aws.region}")


def check_image_uri(uri: str, region: str) -> str:
    """An ECR image URI in ``region`` (Lambda pulls images only from ECR, only in its own region)."""
    m = IMAGE_URI.match(uri)
    if not m:
        raise ValueError(f"--image {uri!r} is not an ECR image URI "
                         f"(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG or @sha256:DIGEST)")
    if m.group(2) != region:
        raise ValueError(f"--image {uri!r} is in {m.group(2)}, the function in {region}: Lambda pulls images "
                         f"only from ECR in its own region")
    return uri


# -- deploy ----------------------------------------------------------------------------------
def deploy(bucket: str, prefix: str, region: str | None = None, *, function_name: str = "numpywren",
           memory: int = 3008, timeout: int = 900, arch: str = "x86_64", blas_threads: int | None = None,
           layer_zip: str | Path | None = None, endpoint_url: str | None = None, runtime: str = RUNTIME,
           event_age: int = EVENT_AGE, log=print, blas: str | None = None, image_uri: str | None = None,
           verify: bool = True) -> dict:
    """Create or update role, layer and function; return their ARNs and what changed.

    ``blas`` chooses the layer's BLAS when deploy builds it (``layers/build.py --blas``);
    ``image_uri`` deploys a container image (``layers/Dockerfile``) instead of a layer.
    ``verify`` ends with a probe of the store by a worker (see the module docstring).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if image_uri is None:
        check_runtime(runtime)
    check_names(function_name, description(f"s3://{bucket}/{check_prefix(prefix)}", image_uri is not None))
    if not 60 <= event_age <= 21600:
        raise ValueError(f"event_age must be 60..21600 s (Lambda's range), got {event_age}")
    if not 128 <= memory <= 10240:
        raise ValueError(f"memory must be 128..10240 MB (Lambda's range), got {memory}")
    if not 1 <= timeout <= 900:
        raise ValueError(f"timeout must be 1..900 s (Lambda's range), got {timeout}")
    prefix = check_prefix(prefix)
    if image_uri is not None and (layer_zip is not None or blas is not None):
        raise ValueError("--image deploys a container image: --layer-zip and --blas are for layer deployments")
    if layer_zip is not None and blas is not None:
        raise ValueError("--blas chooses the BLAS of the layer deploy builds; --layer-zip brings its own")
    aws = _Aws(region, endpoint_url)
    if image_uri is not None:
        check_image_uri(image_uri, aws.region)
    account, partition = aws.identity()
    _check_bucket(aws, bucket)
    n = names(function_name)
    if layer_zip is not None and not Path(layer_zip).is_file():
        raise FileNotFoundError(f"--layer-zip {str(layer_zip)!r} is not a file")
    if layer_zip is None and image_uri is None:
        builder = load_layer_builder()
        layer_zip, manifest = builder.build_layer(arch=arch, blas=blas or builder.DEFAULT_BLAS, runtime=runtime)
        blas = "mkl" if "mkl" in manifest else "openblas"
        log(f"layer BLAS: {manifest['tile_kernels_blas']} ({manifest['blas_choice']})")
    if image_uri is None:
        _check_layer_runtime(Path(layer_zip), runtime)
    changed: list[str] = []
    role_arn = _ensure_role(aws, n, role_policy(bucket, prefix, function_name, aws.region, account, partition),
                            changed)
    store_url = f"s3://{bucket}/{prefix}"
    if image_uri is not None:
        out = _deploy_image(aws, function_name, image_uri, arch, role_arn, memory, timeout,
                            blas_threads or default_blas_threads(memory), store_url, changed, log, event_age)
        return _verified(aws, out, function_name, store_url, verify, log)
    layer_arn = _ensure_layer(aws, n["layer"], Path(layer_zip), arch, bucket, changed, runtime)
    threads = blas_threads or default_blas_threads(memory)
    if blas == "mkl" and threads > 1:
        log(f"note: the MKL layer's tile kernels run sequential MKL on one core; {memory} MB gives {threads} "
            f"vCPUs, which numpy's OpenBLAS (everything but the tile kernels) uses")
    env = {"NUMPYWREN_STORE": store_url, **{v: str(threads) for v in BLAS_THREAD_VARS}}
    config = {"Role": role_arn, "Handler": HANDLER, "Runtime": runtime, "MemorySize": memory, "Timeout": timeout,
              "Environment": {"Variables": env}, "Layers": [layer_arn],
              "Description": description(store_url)}
    function_arn = _ensure_function(aws, function_name, config, arch, changed, log)
    _prune_layers(aws.client("lambda"), n["layer"], layer_arn, changed)
    # The executor re-invokes lost calls; Lambda's own async retries would only duplicate work, and an
    # event older than event_age is one its driver has re-invoked or abandoned.
    aws.client("lambda").put_function_event_invoke_config(FunctionName=function_name, MaximumRetryAttempts=0,
                                                          MaximumEventAgeInSeconds=int(event_age),
                                                          DestinationConfig=failure_destination(bucket))
    for line in changed or ["nothing changed: role, layer and function are up to date"]:
        log(line)
    out = {"role_arn": role_arn, "layer_arn": layer_arn, "function_arn": function_arn, "changed": changed}
    return _verified(aws, out, function_name, store_url, verify, log)


def _verified(aws: "_Aws", out: dict, function_name: str, store_url: str, verify: bool, log) -> dict:
    if verify:
        attempts = verify_store_access(aws.client("lambda"), function_name, store_url, log=log)
        log(f"verified: a worker of {function_name} wrote, read, listed and deleted a key in {store_url}"
            + (f" (after {attempts} attempts: IAM changes were still propagating)" if attempts > 1 else ""))
    return {**out, "verified": verify}


def verify_store_access(lam, function_name: str, store_url: str, delays=PROPAGATION_DELAYS, log=print) -> int:
    """Invoke the function (RequestResponse) with a probe event until a worker reaches ``store_url``.

    Retries, after ``delays`` seconds, only what propagation explains (S3 denying the role, Lambda not
    ready); returns the attempts it took, or raises StoreAccessError naming what to check.
    """
    nonce = uuid.uuid4().hex
    event = {"v": EVENT_VERSION, "kind": "probe", "store": store_url, "nonce": nonce}
    n = names(function_name)
    for attempt, delay in enumerate((*delays, None), 1):
        retry, problem = _probe_once(lam, function_name, event)
        if problem is None:
            return attempt
        if delay is None or not retry:
            break
        log(f"function {function_name} cannot use {store_url} yet ({problem}); IAM changes take seconds to "
            f"propagate: probing again in {delay} s")
        _sleep(delay)
    waited = f" (waited {sum(delays[:attempt - 1]):g} s over {attempt} probes)" if attempt > 1 else ""
    bucket, _, prefix = store_url[len("s3://"):].partition("/")
    raise StoreAccessError(
        f"Lambda function {function_name!r} cannot use its store {store_url}{waited}: {problem}. Check the role "
        f"{n['role']} and its policy {n['policy']} (s3:GetObject/PutObject/DeleteObject on "
        f"arn:aws:s3:::{bucket}/{prefix}/*, s3:ListBucket for prefix {prefix}/), and any bucket policy, SCP or "
        f"KMS key that could deny it; then deploy again (it is idempotent), or pass --no-verify to skip this check")


def _probe_once(lam, function_name: str, event: dict) -> tuple[bool, str | None]:
    """(worth retrying, what went wrong or None) of one probe."""
    try:
        reply = lam.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                           Payload=json.dumps(event).encode())
    except ClientError as e:
        return _code(e) in NOT_READY_CODES or _role_not_ready(e), f"invoking it failed: {e}"
    raw = reply["Payload"].read()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if reply.get("FunctionError"):
        error = (f"{body.get('errorType')}: {body.get('errorMessage')}" if isinstance(body, dict)
                 else raw[:300].decode(errors="replace"))
        return ("AccessDenied" in error), f"the handler failed with {error}"
    if not isinstance(body, dict) or body.get("probe") != event["nonce"]:
        return False, (f"it answered {raw[:200]!r}, not a probe result: is its handler {HANDLER} from a "
                       f"numpywren layer of this version? (rebuild the layer and deploy again)")
    if body.get("ok") is True:
        return False, None
    return bool(body.get("denied")), f"the probe's {body.get('step')} failed: {body.get('error')}"


def _role_not_ready(exc: ClientError) -> bool:
    """Lambda's answer while a new role is not yet assumable (botocore does not retry it)."""
    return _code(exc) == "InvalidParameterValueException" and "cannot be assumed" in str(exc)


def _while_role_propagates(action, what: str, log):
    """``action()``, retried after PROPAGATION_DELAYS while Lambda cannot assume the function's role yet."""
    for delay in (*PROPAGATION_DELAYS, None):
        try:
            return action()
        except ClientError as e:
            if delay is None or not _role_not_ready(e):
                raise
            log(f"{what}: Lambda cannot assume the role yet (IAM changes take seconds to propagate); "
                f"retrying in {delay} s")
            _sleep(delay)


def _deploy_image(aws: _Aws, name: str, image_uri: str, arch: str, role_arn: str, memory: int, timeout: int,
                  threads: int, store: str, changed: list[str], log, event_age: int = EVENT_AGE) -> dict:
    """Create or update a container-image function (PackageType Image: no layer, no runtime, the image's CMD)."""
    lam = aws.client("lambda")
    env = {"NUMPYWREN_STORE": store, **{v: str(threads) for v in BLAS_THREAD_VARS}}
    config = {"Role": role_arn, "MemorySize": memory, "Timeout": timeout, "Environment": {"Variables": env},
              "Description": description(store, image=True)}
    try:
        current = lam.get_function(FunctionName=name)
    except ClientError as e:
        if _code(e) != "ResourceNotFoundException":
            raise
        current = None
    if current is None:
        arn = _while_role_propagates(lambda: lam.create_function(
            FunctionName=name, PackageType="Image", Code={"ImageUri": image_uri}, Architectures=[arch],
            **config)["FunctionArn"], f"creating function {name}", log)
        changed.append(f"created function {name} from image {image_uri}")
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    else:
        conf = current["Configuration"]
        if conf.get("PackageType", "Zip") != "Image":
            raise ValueError(f"function {name} is a zip (layer) deployment; Lambda cannot switch a function to an "
                             f"image: run numpywren teardown --function-name {name} first, or use another name")
        arn = conf["FunctionArn"]
        if current.get("Code", {}).get("ImageUri") != image_uri or conf.get("Architectures", ["x86_64"]) != [arch]:
            lam.update_function_code(FunctionName=name, ImageUri=image_uri, Architectures=[arch])
            changed.append(f"updated image of function {name} to {image_uri} ({arch})")
            _wait_updated(lam, name)
        have = {"Role": conf.get("Role"), "MemorySize": conf.get("MemorySize"), "Timeout": conf.get("Timeout"),
                "Environment": {"Variables": conf.get("Environment", {}).get("Variables", {})},
                "Description": conf.get("Description", "")}
        if have != config:
            _while_role_propagates(lambda: lam.update_function_configuration(FunctionName=name, **config),
                                   f"updating function {name}", log)
            changed.append(f"updated configuration of function {name}")
            _wait_updated(lam, name)
    # Both settings, as for a layer: a PutFunctionEventInvokeConfig without the event age resets it to 6 h.
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0,
                                         MaximumEventAgeInSeconds=int(event_age),
                                         DestinationConfig=failure_destination(urlparse(store).netloc))
    for line in changed or ["nothing changed: role and function are up to date"]:
        log(line)
    return {"role_arn": role_arn, "image_uri": image_uri, "function_arn": arn, "changed": changed}


def _ensure_role(aws: _Aws, n: dict, policy: dict, changed: list[str]) -> str:
    try:
        role = aws.client("iam").get_role(RoleName=n["role"])["Role"]
    except ClientError as e:
        if _code(e) != "NoSuchEntity":
            raise
        role = aws.client("iam").create_role(RoleName=n["role"], AssumeRolePolicyDocument=json.dumps(trust_policy()),
                                   Description="numpywren Lambda workers")["Role"]
        changed.append(f"created role {n['role']}")
    try:
        current = aws.client("iam").get_role_policy(RoleName=n["role"], PolicyName=n["policy"])["PolicyDocument"]
        current = json.loads(current) if isinstance(current, str) else current
    except ClientError as e:
        if _code(e) != "NoSuchEntity":
            raise
        current = None
    if current != policy:
        aws.client("iam").put_role_policy(RoleName=n["role"], PolicyName=n["policy"], PolicyDocument=json.dumps(policy))
        changed.append(f"{'updated' if current else 'attached'} policy {n['policy']} to role {n['role']}")
    return role["Arn"]


def staging_key(layer: str, digest: str) -> str:
    """Where a layer zip waits in the bucket for Lambda to fetch it (outside the workers' prefix)."""
    return f"{STAGING}/{layer}/{digest}.zip"


def _check_layer_runtime(zip_path: Path, runtime: str) -> None:
    """A layer built for another Python would fail at import on Lambda: refuse it here, naming both."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            manifest = json.loads(zf.read("python/numpywren_layer.json"))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return  # not a manifest we can read (an external layer): Lambda will tell
    built = manifest.get("runtime") if isinstance(manifest, dict) else None
    if built and built != runtime:
        raise ValueError(f"layer {zip_path} was built for {built}, the function would run {runtime}: "
                         f"rebuild it (numpywren layer build --runtime {runtime}) or deploy --runtime {built}")


def _ensure_layer(aws: _Aws, layer: str, zip_path: Path, arch: str, bucket: str, changed: list[str],
                  runtime: str = RUNTIME) -> str:
    if not zip_path.is_file():
        raise FileNotFoundError(f"layer zip {zip_path} does not exist (build it: python -m numpywren layer build)")
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    description = f"numpywren {arch} {runtime} sha256:{digest}"
    lam = aws.client("lambda")
    for version in lam.list_layer_versions(LayerName=layer).get("LayerVersions", []):
        if version.get("Description") == description:
            return version["LayerVersionArn"]
    # Through S3: direct uploads are limited to 50 MB, the layer may be larger.
    key = staging_key(layer, digest)
    aws.client("s3").upload_file(str(zip_path), bucket, key)
    try:
        arn = lam.publish_layer_version(
            LayerName=layer, Description=description, Content={"S3Bucket": bucket, "S3Key": key},
            CompatibleRuntimes=[runtime], CompatibleArchitectures=[arch])["LayerVersionArn"]
    finally:
        aws.client("s3").delete_object(Bucket=bucket, Key=key)
    changed.append(f"published layer version {arn}")
    return arn


def _prune_layers(lam, layer: str, keep_arn: str, changed: list[str]) -> None:
    """Delete the layer's other versions: the function uses only ``keep_arn`` now (no pile-up of old zips)."""
    for version in lam.list_layer_versions(LayerName=layer).get("LayerVersions", []):
        if version["LayerVersionArn"] != keep_arn:
            lam.delete_layer_version(LayerName=layer, VersionNumber=version["Version"])
            changed.append(f"deleted old layer version {version['LayerVersionArn']}")


def _ensure_function(aws: _Aws, name: str, config: dict, arch: str, changed: list[str], log=print) -> str:
    lam = aws.client("lambda")
    code = function_zip()
    sha = base64.b64encode(hashlib.sha256(code).digest()).decode()
    try:
        current = lam.get_function(FunctionName=name)["Configuration"]
    except ClientError as e:
        if _code(e) != "ResourceNotFoundException":
            raise
        arn = _while_role_propagates(lambda: lam.create_function(
            FunctionName=name, Code={"ZipFile": code}, Architectures=[arch], PackageType="Zip",
            **config)["FunctionArn"], f"creating function {name}", log)
        changed.append(f"created function {name}")
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        return arn
    if current.get("CodeSha256") != sha or current.get("Architectures", ["x86_64"]) != [arch]:
        lam.update_function_code(FunctionName=name, ZipFile=code, Architectures=[arch])
        changed.append(f"updated code of function {name} ({arch})")
        _wait_updated(lam, name)
    if _config_differs(current, config):
        _while_role_propagates(lambda: lam.update_function_configuration(FunctionName=name, **config),
                               f"updating function {name}", log)
        changed.append(f"updated configuration of function {name}")
        _wait_updated(lam, name)
    return current["FunctionArn"]


def _wait_updated(lam, name: str) -> None:
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})


def _config_differs(current: dict, wanted: dict) -> bool:
    have = {"Role": current.get("Role"), "Handler": current.get("Handler"), "Runtime": current.get("Runtime"),
            "MemorySize": current.get("MemorySize"), "Timeout": current.get("Timeout"),
            "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
            "Layers": [layer["Arn"] for layer in current.get("Layers", [])],
            "Description": current.get("Description", "")}
    return have != wanted


# -- teardown -------------------------------------------------------------------------------
def teardown(region: str | None = None, *, function_name: str = "numpywren", bucket: str | None = None,
             endpoint_url: str | None = None, log=print) -> list[str]:
    """Remove the function, every version of its layer, its role and log group (data stays)."""
    aws = _Aws(region, endpoint_url)
    lam = aws.client("lambda")
    n = names(function_name)
    removed: list[str] = []

    def gone(call, *codes, **kw) -> bool:
        try:
            call(**kw)
            return True
        except ClientError as e:
            if _code(e) in codes:
                return False
            raise

    if gone(lam.delete_function, "ResourceNotFoundException", FunctionName=function_name):
        removed.append(f"function {function_name}")
    for version in lam.list_layer_versions(LayerName=n["layer"]).get("LayerVersions", []):
        lam.delete_layer_version(LayerName=n["layer"], VersionNumber=version["Version"])
        removed.append(f"layer version {version['LayerVersionArn']}")
    try:
        for policy in aws.client("iam").list_role_policies(RoleName=n["role"])["PolicyNames"]:
            aws.client("iam").delete_role_policy(RoleName=n["role"], PolicyName=policy)
        for policy in aws.client("iam").list_attached_role_policies(RoleName=n["role"])["AttachedPolicies"]:
            aws.client("iam").detach_role_policy(RoleName=n["role"], PolicyArn=policy["PolicyArn"])
        aws.client("iam").delete_role(RoleName=n["role"])
        removed.append(f"role {n['role']}")
    except ClientError as e:
        if _code(e) != "NoSuchEntity":
            raise
    if gone(aws.client("logs").delete_log_group, "ResourceNotFoundException", logGroupName=f"/aws/lambda/{function_name}"):
        removed.append(f"log group /aws/lambda/{function_name}")
    if bucket:
        staging = f"{STAGING}/{n['layer']}/"
        keys = [o["Key"] for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=staging)
                for o in page.get("Contents", [])]
        for key in keys:
            aws.client("s3").delete_object(Bucket=bucket, Key=key)
            removed.append(f"s3://{bucket}/{key}")
    for line in removed or [f"nothing to remove for function {function_name}"]:
        log(f"removed {line}" if removed else line)
    return removed


# -- the layer builder (layers/build.py in the source tree) ----------------------------------
def load_layer_builder():
    """Import ``layers/build.py`` from the numpywren source tree (it is a tool, not a package module)."""
    path = Path(__file__).resolve().parents[1] / "layers" / "build.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the layer builder ships with the numpywren source tree; "
                                f"run from a checkout, or pass --layer-zip")
    spec = importlib.util.spec_from_file_location("numpywren_layers_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- CLI (routed by numpywren.cli) -------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: $AWS_DEFAULT_REGION)")
    p.add_argument("--function-name", default="numpywren", help="Lambda function name (default numpywren)")
    p.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # one endpoint for all services, e.g. a moto server


def add_arguments_deploy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", required=True, help="S3 bucket holding the matrices")
    p.add_argument("--prefix", required=True, help="key prefix the workers may use (their only access)")
    _common(p)
    p.add_argument("--memory", type=int, default=3008, help="function memory in MB (default 3008)")
    p.add_argument("--timeout", type=int, default=900, help="function timeout in s (default 900)")
    p.add_argument("--arch", choices=ARCHITECTURES, default="x86_64")
    p.add_argument("--blas-threads", type=int, help="BLAS threads per worker (default: vCPUs for the memory)")
    p.add_argument("--layer-zip", help="use this layer zip instead of building one")
    p.add_argument("--blas", choices=["auto", "openblas", "mkl"],
                   help="BLAS of the tile kernels in the layer deploy builds (default auto: MKL on x86_64 when gcc "
                        "and objdump are on PATH, else openblas; mkl: x86_64)")
    p.add_argument("--image", metavar="URI", help="deploy this ECR container image (layers/Dockerfile) instead "
                                                 "of a layer")
    p.add_argument("--runtime", choices=RUNTIMES, default=RUNTIME, help=f"Lambda runtime (default {RUNTIME})")
    p.add_argument("--event-age", type=int, default=EVENT_AGE,
                   help=f"seconds Lambda keeps a queued event before dropping it (default {EVENT_AGE})")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the final probe (a worker writing, reading and deleting a key in the store)")


def run_deploy(args) -> int:
    out = deploy(args.bucket, args.prefix, args.region, function_name=args.function_name, memory=args.memory,
                 timeout=args.timeout, arch=args.arch, blas_threads=args.blas_threads, layer_zip=args.layer_zip,
                 endpoint_url=args.endpoint_url, runtime=args.runtime, event_age=args.event_age,
                 blas=args.blas, image_uri=args.image, verify=args.verify)
    print(json.dumps({k: v for k, v in out.items() if k != "changed"}, indent=2))
    return 0


def add_arguments_teardown(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--bucket", help=f"also remove leftover staged layer zips under {STAGING}/ of this bucket")


def run_teardown(args) -> int:
    teardown(args.region, function_name=args.function_name, bucket=args.bucket, endpoint_url=args.endpoint_url)
    return 0


def add_arguments_layer(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["build"])
    p.add_argument("--arch", choices=ARCHITECTURES, default="x86_64")
    p.add_argument("--out", help="output folder (default layers/dist)")
    p.add_argument("--wheel-dir", help="build from the wheels in this folder, offline")
    p.add_argument("--with-sdk", action="store_true", help="include boto3 instead of using the runtime's")
    p.add_argument("--blas", choices=["auto", "openblas", "mkl"], default=None,
                   help="BLAS of the tile kernels (default auto: MKL on x86_64 when gcc and objdump are on PATH, "
                        "else openblas, see layers/README.md; mkl: x86_64 only)")
    p.add_argument("--runtime", choices=RUNTIMES, default=RUNTIME,
                   help=f"the Lambda runtime whose Python the wheels are for (default {RUNTIME})")


def run_layer(args) -> int:
    builder = load_layer_builder()
    zip_path, manifest = builder.build_layer(arch=args.arch, out_dir=args.out, wheel_dir=args.wheel_dir,
                                             with_sdk=args.with_sdk, blas=args.blas or builder.DEFAULT_BLAS,
                                             runtime=args.runtime)
    print(f"{zip_path}: {manifest['zipped_bytes'] / 1e6:.1f} MB zipped, "
          f"{manifest['unzipped_bytes'] / 1e6:.1f} MB unzipped (limit 250 MB); {manifest['blas']}; "
          f"tile kernels: {manifest['tile_kernels_blas']} ({manifest['blas_choice']}); "
          f"packages {manifest['packages']}")
    return 0
