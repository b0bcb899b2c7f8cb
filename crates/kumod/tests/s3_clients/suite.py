"""boto3 against Kumo's S3 endpoint (driven by crates/kumod/tests/s3.rs).

    python suite.py CASE

Environment: S3_ENDPOINT (http://127.0.0.1:PORT), KEYS (JSON: name -> [access key id, secret]),
WORK (a scratch directory). Every case asserts what it checks and prints "ok CASE" at the end.
"""
import datetime
import hashlib
import json
import os
import socket
import sys
import time
import urllib.request
import urllib.error

import boto3
import botocore
import botocore.auth
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
KEYS = json.loads(os.environ["KEYS"])
WORK = os.environ.get("WORK", "/tmp")


def client(key="owner", **cfg):
    if key is None:
        config = Config(signature_version=UNSIGNED, retries={"max_attempts": 1}, **cfg)
        return boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", config=config)
    kid, secret = KEYS[key]
    config = Config(retries={"max_attempts": 1}, **cfg)
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=kid,
        aws_secret_access_key=secret,
        config=config,
    )


def code(e):
    return e.response["Error"]["Code"]


def fails(code_wanted, f, *args, **kw):
    try:
        f(*args, **kw)
    except ClientError as e:
        assert code(e) == code_wanted, f"wanted {code_wanted}, got {code(e)}: {e}"
        return e
    raise AssertionError(f"wanted {code_wanted}, the call succeeded")


def case_operations():
    s3 = client()
    s3.create_bucket(Bucket="ops")
    fails("BucketAlreadyOwnedByYou", s3.create_bucket, Bucket="ops")
    fails("InvalidBucketName", s3.create_bucket, Bucket="Bad_Name")
    assert s3.get_bucket_location(Bucket="ops").get("LocationConstraint") in (None, "")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "ops" in names, names

    # Objects: metadata, standard headers, ETags, checksums (boto3 sends CRC32 trailers by default).
    body = b"hello kumo\n" * 1000
    r = s3.put_object(Bucket="ops", Key="dir/a.txt", Body=body, ContentType="text/plain",
                      Metadata={"colour": "blue"}, CacheControl="max-age=60")
    assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), r["ETag"]
    h = s3.head_object(Bucket="ops", Key="dir/a.txt")
    assert h["ContentLength"] == len(body)
    assert h["ContentType"] == "text/plain"
    assert h["Metadata"] == {"colour": "blue"}, h["Metadata"]
    assert h["CacheControl"] == "max-age=60"
    g = s3.get_object(Bucket="ops", Key="dir/a.txt")
    assert g["Body"].read() == body
    # SHA-256 checksum sent as a header, and given back on request.
    r = s3.put_object(Bucket="ops", Key="dir/b.txt", Body=b"bee", ChecksumAlgorithm="SHA256")
    import base64
    want = base64.b64encode(hashlib.sha256(b"bee").digest()).decode()
    assert r.get("ChecksumSHA256") == want, r
    g = s3.get_object(Bucket="ops", Key="dir/b.txt", ChecksumMode="ENABLED")
    assert g["Body"].read() == b"bee" and g.get("ChecksumSHA256") == want
    # A wrong checksum: BadDigest, and nothing is stored.
    fails("BadDigest", s3.put_object, Bucket="ops", Key="dir/bad", Body=b"x", ChecksumCRC32="AAAAAA==")
    fails("BadDigest", s3.put_object, Bucket="ops", Key="dir/bad", Body=b"x", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    fails("NoSuchKey", s3.get_object, Bucket="ops", Key="dir/bad")

    # Range and conditions.
    assert s3.get_object(Bucket="ops", Key="dir/a.txt", Range="bytes=6-9")["Body"].read() == b"kumo"
    assert s3.get_object(Bucket="ops", Key="dir/a.txt", Range="bytes=-5")["Body"].read() == body[-5:]
    fails("InvalidRange", s3.get_object, Bucket="ops", Key="dir/a.txt", Range="bytes=999999-")
    etag = h["ETag"]
    fails("304", s3.get_object, Bucket="ops", Key="dir/a.txt", IfNoneMatch=etag)
    fails("PreconditionFailed", s3.get_object, Bucket="ops", Key="dir/a.txt", IfMatch='"0000"')
    assert s3.get_object(Bucket="ops", Key="dir/a.txt", IfMatch=etag)["ContentLength"] == len(body)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    fails("304", s3.get_object, Bucket="ops", Key="dir/a.txt", IfModifiedSince=future)

    # Keys: over 1,024 bytes refused.
    fails("KeyTooLongError", s3.put_object, Bucket="ops", Key="k" * 1025, Body=b"x")

    # Listing: v2 with delimiter, prefix, start-after, continuation; v1 with markers.
    keys = ["list/%03d" % i for i in range(25)] + ["list/sub/%d" % i for i in range(5)] + ["list/z/1", "list/z/2"]
    for k in keys:
        s3.put_object(Bucket="ops", Key=k, Body=k.encode())
    seen, prefixes, token, pages = [], [], None, 0
    while True:
        kw = dict(Bucket="ops", Prefix="list/", Delimiter="/", MaxKeys=7)
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        pages += 1
        seen += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        assert r["KeyCount"] <= 7
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == ["list/%03d" % i for i in range(25)], seen
    assert prefixes == ["list/sub/", "list/z/"], prefixes
    assert pages == 4, pages
    r = s3.list_objects_v2(Bucket="ops", Prefix="list/", StartAfter="list/020")
    assert [o["Key"] for o in r["Contents"]][:5] == ["list/021", "list/022", "list/023", "list/024", "list/sub/0"]
    pag = s3.get_paginator("list_objects")
    allkeys = [o["Key"] for p in pag.paginate(Bucket="ops", Prefix="list/", PaginationConfig={"PageSize": 4}) for o in p.get("Contents", [])]
    assert allkeys == sorted(keys), allkeys
    fails("InvalidArgument", s3.list_objects_v2, Bucket="ops", ContinuationToken="%%%not-a-token")

    # Copy (within and between buckets of one project), metadata directives.
    s3.create_bucket(Bucket="ops-copy")
    s3.copy_object(Bucket="ops-copy", Key="a-copy", CopySource={"Bucket": "ops", "Key": "dir/a.txt"})
    c = s3.head_object(Bucket="ops-copy", Key="a-copy")
    assert c["Metadata"] == {"colour": "blue"} and c["ETag"] == etag
    s3.copy_object(Bucket="ops", Key="dir/a.txt", CopySource={"Bucket": "ops", "Key": "dir/a.txt"},
                   MetadataDirective="REPLACE", Metadata={"colour": "red"}, ContentType="text/x-kumo")
    c = s3.head_object(Bucket="ops", Key="dir/a.txt")
    assert c["Metadata"] == {"colour": "red"} and c["ContentType"] == "text/x-kumo"
    fails("InvalidRequest", s3.copy_object, Bucket="ops", Key="dir/a.txt", CopySource={"Bucket": "ops", "Key": "dir/a.txt"})

    # Delete (single, multiple), and buckets: not empty, then empty.
    fails("BucketNotEmpty", s3.delete_bucket, Bucket="ops-copy")
    s3.delete_object(Bucket="ops-copy", Key="a-copy")
    s3.delete_object(Bucket="ops-copy", Key="never-was")
    s3.delete_bucket(Bucket="ops-copy")
    fails("NoSuchBucket", s3.list_objects_v2, Bucket="ops-copy")
    r = s3.delete_objects(Bucket="ops", Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(r["Deleted"]) == len(keys) and not r.get("Errors"), r
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="ops", Prefix="list/").get("Contents", [])] == []

    # Malformed XML.
    fails("MalformedXML", s3.delete_objects, Bucket="ops", Delete={"Objects": []})
    print("ok operations")


def case_multipart():
    s3 = client()
    s3.create_bucket(Bucket="multi")
    size = int(os.environ.get("MP_BYTES", str(1 << 30)))
    path = os.path.join(WORK, "big.bin")
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            chunk = block[:8] + i.to_bytes(8, "big") + block[16:]
            f.write(chunk)
            md5.update(chunk)
    cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
    t = time.time()
    s3.upload_file(path, "multi", "big.bin", Config=cfg)
    up = time.time() - t
    h = s3.head_object(Bucket="multi", Key="big.bin")
    parts = size // (16 << 20)
    assert h["ContentLength"] == size and h["ETag"].endswith('-%d"' % parts), h
    out = os.path.join(WORK, "big.out")
    s3.download_file("multi", "big.bin", out, Config=cfg)
    d = hashlib.md5()
    with open(out, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            d.update(b)
    assert d.hexdigest() == md5.hexdigest()
    os.remove(out)
    os.remove(path)

    # The rules of completion.
    u = s3.create_multipart_upload(Bucket="multi", Key="rules")["UploadId"]
    p1 = s3.upload_part(Bucket="multi", Key="rules", UploadId=u, PartNumber=1, Body=b"a" * 100)
    p2 = s3.upload_part(Bucket="multi", Key="rules", UploadId=u, PartNumber=2, Body=b"b" * 100)
    fails("InvalidArgument", s3.upload_part, Bucket="multi", Key="rules", UploadId=u, PartNumber=10001, Body=b"c")
    ups = s3.list_multipart_uploads(Bucket="multi")["Uploads"]
    assert [x["UploadId"] for x in ups] == [u], ups
    parts_listed = s3.list_parts(Bucket="multi", Key="rules", UploadId=u)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts_listed] == [(1, 100), (2, 100)]
    fails("EntityTooSmall", s3.complete_multipart_upload, Bucket="multi", Key="rules", UploadId=u,
          MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    fails("InvalidPartOrder", s3.complete_multipart_upload, Bucket="multi", Key="rules", UploadId=u,
          MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]}, {"PartNumber": 1, "ETag": p1["ETag"]}]})
    fails("InvalidPart", s3.complete_multipart_upload, Bucket="multi", Key="rules", UploadId=u,
          MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    fails("NoSuchKey", s3.get_object, Bucket="multi", Key="rules")
    # A single small last part is fine.
    r = s3.complete_multipart_upload(Bucket="multi", Key="rules", UploadId=u,
                                     MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert s3.get_object(Bucket="multi", Key="rules")["Body"].read() == b"b" * 100
    fails("NoSuchUpload", s3.list_parts, Bucket="multi", Key="rules", UploadId=u)
    u2 = s3.create_multipart_upload(Bucket="multi", Key="gone")["UploadId"]
    s3.upload_part(Bucket="multi", Key="gone", UploadId=u2, PartNumber=1, Body=b"z")
    s3.abort_multipart_upload(Bucket="multi", Key="gone", UploadId=u2)
    fails("NoSuchUpload", s3.abort_multipart_upload, Bucket="multi", Key="gone", UploadId=u2)
    assert s3.list_multipart_uploads(Bucket="multi").get("Uploads", []) == []
    print("ok multipart %d MiB up in %.1f s" % (size >> 20, up))


def case_access():
    owner, viewer, other, anon = client("owner"), client("viewer"), client("other"), client(None)
    owner.create_bucket(Bucket="private-b")
    owner.put_object(Bucket="private-b", Key="secret.txt", Body=b"s")
    # A viewer's key reads and cannot write.
    assert viewer.get_object(Bucket="private-b", Key="secret.txt")["Body"].read() == b"s"
    fails("AccessDenied", viewer.put_object, Bucket="private-b", Key="v.txt", Body=b"v")
    fails("AccessDenied", viewer.delete_object, Bucket="private-b", Key="secret.txt")
    fails("AccessDenied", viewer.create_bucket, Bucket="viewer-b")
    # Another project's key: denied, even to know more than that the name is taken.
    fails("AccessDenied", other.get_object, Bucket="private-b", Key="secret.txt")
    fails("AccessDenied", other.list_objects_v2, Bucket="private-b")
    fails("BucketAlreadyExists", other.create_bucket, Bucket="private-b")
    assert "private-b" not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    # Anonymous callers: a private bucket and a missing one look the same.
    fails("AccessDenied", anon.get_object, Bucket="private-b", Key="secret.txt")
    fails("AccessDenied", anon.get_object, Bucket="no-such-bucket-at-all", Key="x")
    fails("NoSuchBucket", owner.get_object, Bucket="no-such-bucket-at-all", Key="x")
    # public-read: anyone reads, nobody anonymous writes.
    owner.create_bucket(Bucket="public-b", ACL="public-read")
    owner.put_object(Bucket="public-b", Key="index.html", Body=b"<h1>hi</h1>")
    assert anon.get_object(Bucket="public-b", Key="index.html")["Body"].read() == b"<h1>hi</h1>"
    assert [o["Key"] for o in anon.list_objects_v2(Bucket="public-b")["Contents"]] == ["index.html"]
    fails("AccessDenied", anon.put_object, Bucket="public-b", Key="x", Body=b"x")
    assert other.get_object(Bucket="public-b", Key="index.html")["Body"].read() == b"<h1>hi</h1>"
    fails("AccessDenied", other.put_object, Bucket="public-b", Key="x", Body=b"x")
    grants = owner.get_bucket_acl(Bucket="public-b")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") and g["Permission"] == "READ" for g in grants), grants
    owner.put_bucket_acl(Bucket="public-b", ACL="private")
    fails("AccessDenied", anon.get_object, Bucket="public-b", Key="index.html")
    fails("AccessDenied", viewer.put_bucket_acl, Bucket="private-b", ACL="public-read")
    # Presigned GET and PUT; expired → 403.
    url = owner.generate_presigned_url("get_object", Params={"Bucket": "private-b", "Key": "secret.txt"}, ExpiresIn=300)
    assert urllib.request.urlopen(url).read() == b"s"
    v4 = client("owner", signature_version="s3v4")
    put = v4.generate_presigned_url("put_object", Params={"Bucket": "private-b", "Key": "presigned.txt"}, ExpiresIn=300)
    urllib.request.urlopen(urllib.request.Request(put, data=b"via url", method="PUT")).read()
    assert owner.get_object(Bucket="private-b", Key="presigned.txt")["Body"].read() == b"via url"
    short = owner.generate_presigned_url("get_object", Params={"Bucket": "private-b", "Key": "secret.txt"}, ExpiresIn=1)
    time.sleep(2.5)
    try:
        urllib.request.urlopen(short)
        raise AssertionError("an expired presigned URL worked")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
        assert b"AccessDenied" in e.read()
    # A wrong secret, an unknown key, a skewed clock.
    kid, _ = KEYS["owner"]
    bad = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id=kid,
                       aws_secret_access_key="x" * 40, config=Config(retries={"max_attempts": 1}))
    fails("SignatureDoesNotMatch", bad.list_objects_v2, Bucket="private-b")
    unknown = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="KUMOAAAAAAAAAAAAAAAA",
                           aws_secret_access_key="x" * 40, config=Config(retries={"max_attempts": 1}))
    fails("InvalidAccessKeyId", unknown.list_objects_v2, Bucket="private-b")
    real = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: real(remove_tzinfo) - datetime.timedelta(hours=2)
    try:
        fails("RequestTimeTooSkewed", owner.list_objects_v2, Bucket="private-b")
    finally:
        botocore.auth.get_current_datetime = real
    print("ok access")


def case_versioning():
    """Versioning enabled then suspended: versions kept, read and deleted by id, delete markers,
    ListObjectVersions with pages and a delimiter, copies of an old version, multipart."""
    s3 = client()
    s3.create_bucket(Bucket="ver")
    assert "Status" not in s3.get_bucket_versioning(Bucket="ver")
    r = s3.put_object(Bucket="ver", Key="k", Body=b"v1")
    assert "VersionId" not in r, r  # never versioned: no version id
    fails("AccessDenied", client("viewer").put_bucket_versioning, Bucket="ver",
          VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"
    a = s3.put_object(Bucket="ver", Key="k", Body=b"v2")["VersionId"]
    b = s3.put_object(Bucket="ver", Key="k", Body=b"v3")["VersionId"]
    assert a != b and "null" not in (a, b), (a, b)
    got = s3.get_object(Bucket="ver", Key="k")
    assert got["Body"].read() == b"v3" and got["VersionId"] == b, got
    assert s3.get_object(Bucket="ver", Key="k", VersionId=a)["Body"].read() == b"v2"
    assert s3.get_object(Bucket="ver", Key="k", VersionId="null")["Body"].read() == b"v1"
    assert s3.head_object(Bucket="ver", Key="k", VersionId=a)["ContentLength"] == 2
    fails("InvalidArgument", s3.get_object, Bucket="ver", Key="k", VersionId="not-a-version")
    fails("NoSuchVersion", s3.get_object, Bucket="ver", Key="k", VersionId="0" * 32)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ver").get("Contents", [])]
    assert keys == ["k"], keys
    v = s3.list_object_versions(Bucket="ver")
    assert [(x["VersionId"], x["IsLatest"], x["Size"]) for x in v["Versions"]] == [
        (b, True, 2), (a, False, 2), ("null", False, 2)], v["Versions"]
    # A delete hides the key behind a marker; the versions stay.
    d = s3.delete_object(Bucket="ver", Key="k")
    assert d["DeleteMarker"] is True, d
    m = d["VersionId"]
    fails("NoSuchKey", s3.get_object, Bucket="ver", Key="k")
    e = fails("MethodNotAllowed", s3.get_object, Bucket="ver", Key="k", VersionId=m)
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert s3.list_objects_v2(Bucket="ver").get("Contents", []) == []
    v = s3.list_object_versions(Bucket="ver")
    assert [(x["VersionId"], x["IsLatest"]) for x in v["DeleteMarkers"]] == [(m, True)], v
    assert len(v["Versions"]) == 3 and not any(x["IsLatest"] for x in v["Versions"]), v["Versions"]
    fails("BucketNotEmpty", s3.delete_bucket, Bucket="ver")
    # Removing the marker brings the key back; removing a version removes it for good.
    d = s3.delete_object(Bucket="ver", Key="k", VersionId=m)
    assert d.get("DeleteMarker") is True and d["VersionId"] == m, d
    assert s3.get_object(Bucket="ver", Key="k")["Body"].read() == b"v3"
    d = s3.delete_object(Bucket="ver", Key="k", VersionId=a)
    assert d["VersionId"] == a and not d.get("DeleteMarker"), d
    fails("NoSuchVersion", s3.get_object, Bucket="ver", Key="k", VersionId=a)
    # Deleting the latest version makes the one before it current.
    c = s3.put_object(Bucket="ver", Key="k", Body=b"v5")["VersionId"]
    s3.delete_object(Bucket="ver", Key="k", VersionId=c)
    assert s3.get_object(Bucket="ver", Key="k")["Body"].read() == b"v3"
    # A copy of an old version.
    r = s3.copy_object(Bucket="ver", Key="k-old", CopySource={"Bucket": "ver", "Key": "k", "VersionId": "null"})
    assert r["CopySourceVersionId"] == "null" and r["VersionId"], r
    assert s3.get_object(Bucket="ver", Key="k-old")["Body"].read() == b"v1"
    # Multipart completes make versions too.
    u = s3.create_multipart_upload(Bucket="ver", Key="dir/mp")["UploadId"]
    p = s3.upload_part(Bucket="ver", Key="dir/mp", UploadId=u, PartNumber=1, Body=b"m" * 100)
    r = s3.complete_multipart_upload(Bucket="ver", Key="dir/mp", UploadId=u,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert r["VersionId"], r
    for i in range(3):
        s3.put_object(Bucket="ver", Key="dir/mp", Body=b"n" * i)
    s3.delete_object(Bucket="ver", Key="dir/gone")  # a marker for a key that never existed
    # Pages of one entry each give what one listing gives; a delimiter rolls dir/ up.
    whole = s3.list_object_versions(Bucket="ver")
    entries = lambda r: [(x["Key"], x["VersionId"]) for x in r.get("Versions", []) + r.get("DeleteMarkers", [])]
    paged = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket="ver", PaginationConfig={"PageSize": 1}):
        assert len(entries(page)) + len(page.get("CommonPrefixes", [])) <= 1, page
        paged += entries(page)
    assert sorted(paged) == sorted(entries(whole)) and len(paged) == 8, (paged, entries(whole))
    top = s3.list_object_versions(Bucket="ver", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/"], top
    assert sorted({k for k, _ in entries(top)}) == ["k", "k-old"], top
    under = s3.list_object_versions(Bucket="ver", Prefix="dir/")
    assert sum(1 for x in under["Versions"] if x["Key"] == "dir/mp") == 4, under
    # Suspended: a write replaces the null version, the other versions stay.
    s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket="ver")["Status"] == "Suspended"
    r = s3.put_object(Bucket="ver", Key="k", Body=b"v4")
    assert r["VersionId"] == "null", r
    v = s3.list_object_versions(Bucket="ver", Prefix="k", Delimiter="/")
    assert [(x["Key"], x["VersionId"], x["IsLatest"]) for x in v["Versions"] if x["Key"] == "k"] == [
        ("k", "null", True), ("k", b, False)], v["Versions"]
    assert s3.get_object(Bucket="ver", Key="k", VersionId="null")["Body"].read() == b"v4"
    # Every version and marker deleted by id, in one request: the bucket is empty.
    gone = [{"Key": k, "VersionId": vid} for k, vid in entries(s3.list_object_versions(Bucket="ver"))]
    r = s3.delete_objects(Bucket="ver", Delete={"Objects": gone})
    assert not r.get("Errors") and len(r["Deleted"]) == len(gone), r
    assert "Versions" not in s3.list_object_versions(Bucket="ver")
    print("ok versioning")


def case_requests():
    """A known number of requests of each class on bucket "req" (the test checks the bill)."""
    s3 = client()
    s3.create_bucket(Bucket="req")  # not a request on a bucket: not counted
    for i in range(20):
        s3.put_object(Bucket="req", Key="k%d" % i, Body=b"x")  # 20 writes
    for i in range(30):
        s3.get_object(Bucket="req", Key="k%d" % (i % 20))["Body"].read()  # 30 reads
    for i in range(10):
        s3.head_object(Bucket="req", Key="k%d" % i)  # 10 reads
    for _ in range(5):
        s3.list_objects_v2(Bucket="req")  # 5 reads
    fails("AccessDenied", client("other").get_object, Bucket="req", Key="k0")  # refused: not counted
    s3.delete_objects(Bucket="req", Delete={"Objects": [{"Key": "k%d" % i} for i in range(20)]})  # 1 write
    print("ok requests")


def case_same_key():
    """Concurrent writers of one key all succeed (the last one wins), unversioned and versioned."""
    import concurrent.futures
    s3 = client()
    for bucket, versioned in (("same-key", False), ("same-key-v", True)):
        s3.create_bucket(Bucket=bucket)
        if versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

        def writer(w):
            c = client()
            for i in range(10):
                c.put_object(Bucket=bucket, Key="k", Body=b"%d-%d" % (w, i))
                if i % 3 == 2:
                    c.delete_object(Bucket=bucket, Key="k")
            return w

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert sorted(pool.map(writer, range(8))) == list(range(8))
        v = s3.list_object_versions(Bucket=bucket)
        entries = v.get("Versions", []) + v.get("DeleteMarkers", [])
        assert sum(1 for x in entries if x["IsLatest"]) == 1, entries
        if versioned:
            assert len(v.get("Versions", [])) == 80 and len(v.get("DeleteMarkers", [])) == 24, v
        else:
            assert len(entries) <= 1, entries
    # If-None-Match: * among concurrent writers: exactly one creates the key.
    barrier = __import__("threading").Barrier(8)

    def create_once(w):
        c = client()
        barrier.wait()
        try:
            c.put_object(Bucket="same-key", Key="once", Body=b"%d" % w, IfNoneMatch="*")
            return "created"
        except ClientError as e:
            return code(e)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = sorted(pool.map(create_once, range(8)))
    assert got == ["PreconditionFailed"] * 7 + ["created"], got
    fails("PreconditionFailed", s3.put_object, Bucket="same-key", Key="once", Body=b"again", IfNoneMatch="*")
    print("ok same_key")


def case_quota():
    """The project may hold 3 objects (set by the test): the 4th is refused, naming the limit;
    overwrites, deletes, uploads and aborts keep the count and the bytes right."""
    s3 = client()
    s3.create_bucket(Bucket="quota-b")
    for i in range(3):
        s3.put_object(Bucket="quota-b", Key="k%d" % i, Body=b"x" * 1000)
    e = fails("QuotaExceeded", s3.put_object, Bucket="quota-b", Key="k3", Body=b"y")
    assert "objects 3 of 3" in e.response["Error"]["Message"], e.response["Error"]
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    fails("NoSuchKey", s3.get_object, Bucket="quota-b", Key="k3")
    s3.put_object(Bucket="quota-b", Key="k0", Body=b"z" * 500)  # an overwrite: still 3
    s3.delete_object(Bucket="quota-b", Key="k1")
    s3.put_object(Bucket="quota-b", Key="k3", Body=b"w" * 10)
    u = s3.create_multipart_upload(Bucket="quota-b", Key="mp")["UploadId"]
    s3.upload_part(Bucket="quota-b", Key="mp", UploadId=u, PartNumber=1, Body=b"p" * 300)
    s3.upload_part(Bucket="quota-b", Key="mp", UploadId=u, PartNumber=1, Body=b"p" * 200)  # replaced
    s3.abort_multipart_upload(Bucket="quota-b", Key="mp", UploadId=u)
    print("ok quota")


def case_lifecycle_set():
    s3 = client()
    s3.create_bucket(Bucket="life")
    fails("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration, Bucket="life")
    rules = [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 1},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket="life", LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket="life")["Rules"]
    assert [(r["ID"], r["Status"], r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in got] == [
        ("logs", "Enabled", "logs/", 1), ("off", "Disabled", "keep/", 1)], got
    fails("NotImplemented", s3.put_bucket_lifecycle_configuration, Bucket="life", LifecycleConfiguration={"Rules": [
        {"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""}, "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}]})
    fails("NotImplemented", s3.put_bucket_lifecycle_configuration, Bucket="life", LifecycleConfiguration={"Rules": [
        {"ID": "d", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Date": datetime.datetime(2030, 1, 1)}}]})
    fails("AccessDenied", client("viewer").put_bucket_lifecycle_configuration, Bucket="life",
          LifecycleConfiguration={"Rules": rules})
    for k in ["logs/a", "logs/b", "keep/c", "top"]:
        s3.put_object(Bucket="life", Key=k, Body=k.encode())
    s3.create_multipart_upload(Bucket="life", Key="logs/big")
    # A versioned bucket: current objects expire behind a delete marker, old versions go.
    s3.create_bucket(Bucket="life-v")
    s3.put_bucket_versioning(Bucket="life-v", VersioningConfiguration={"Status": "Enabled"})
    fails("NotImplemented", s3.put_bucket_lifecycle_configuration, Bucket="life-v", LifecycleConfiguration={"Rules": [
        {"ID": "n", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}}]})
    s3.put_bucket_lifecycle_configuration(Bucket="life-v", LifecycleConfiguration={"Rules": [
        {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    got = s3.get_bucket_lifecycle_configuration(Bucket="life-v")["Rules"]
    assert got[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1, got
    s3.put_object(Bucket="life-v", Key="a", Body=b"first")
    s3.put_object(Bucket="life-v", Key="a", Body=b"second")
    print("ok lifecycle_set")


def case_lifecycle_check():
    s3 = client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="life").get("Contents", [])]
    assert keys == ["keep/c", "top"], keys
    assert s3.list_multipart_uploads(Bucket="life").get("Uploads", []) == []
    s3.delete_bucket_lifecycle(Bucket="life")
    fails("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration, Bucket="life")
    # life-v: "second" expired behind a delete marker (and is noncurrent only since now), "first"
    # (noncurrent for two days) is gone for good.
    fails("NoSuchKey", s3.get_object, Bucket="life-v", Key="a")
    v = s3.list_object_versions(Bucket="life-v")
    assert len(v.get("Versions", [])) == 1, v
    kept = v["Versions"][0]["VersionId"]
    assert s3.get_object(Bucket="life-v", Key="a", VersionId=kept)["Body"].read() == b"second"
    assert [x["IsLatest"] for x in v.get("DeleteMarkers", [])] == [True], v
    print("ok lifecycle_check")


def case_revoked():
    """The key named by KEY_NAME was deleted: it must not work any more."""
    fails("InvalidAccessKeyId", client(os.environ["KEY_NAME"]).list_buckets)
    print("ok revoked")


def case_virtual_host():
    """Virtual-host-style addressing: BUCKET.s3.kumo.test resolved to the endpoint here."""
    real = socket.getaddrinfo

    def resolve(host, *a, **kw):
        if host.endswith(".kumo.test") or host == "s3.kumo.test":
            host = "127.0.0.1"
        return real(host, *a, **kw)

    socket.getaddrinfo = resolve
    port = ENDPOINT.rsplit(":", 1)[1]
    kid, secret = KEYS["owner"]
    s3 = boto3.client("s3", endpoint_url="http://s3.kumo.test:%s" % port, region_name="us-east-1",
                      aws_access_key_id=kid, aws_secret_access_key=secret,
                      config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
    s3.create_bucket(Bucket="vhost")
    s3.put_object(Bucket="vhost", Key="a/b.txt", Body=b"virtual")
    assert s3.get_object(Bucket="vhost", Key="a/b.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="vhost")["Contents"]] == ["a/b.txt"]
    # The same object path-style.
    assert client().get_object(Bucket="vhost", Key="a/b.txt")["Body"].read() == b"virtual"
    print("ok virtual_host")


def case_crash_writer():
    """PUTs and multipart completes until the endpoint goes away; every acknowledged one is
    appended to ACKS (key, md5) before the next begins."""
    s3 = client(connect_timeout=2, read_timeout=10)
    acks = open(os.environ["ACKS"], "a")
    i = int(os.environ.get("START", "0"))
    big = os.urandom(5 << 20)
    while True:
        i += 1
        key = "crash/%06d" % i
        try:
            if i % 5 == 0:
                u = s3.create_multipart_upload(Bucket="crash", Key=key)["UploadId"]
                b1 = big[:8] + i.to_bytes(8, "big") + big[16:]
                b2 = b"tail %d" % i
                e1 = s3.upload_part(Bucket="crash", Key=key, UploadId=u, PartNumber=1, Body=b1)["ETag"]
                e2 = s3.upload_part(Bucket="crash", Key=key, UploadId=u, PartNumber=2, Body=b2)["ETag"]
                s3.complete_multipart_upload(Bucket="crash", Key=key, UploadId=u, MultipartUpload={
                    "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
                body = b1 + b2
            else:
                body = os.urandom(1000 + (i * 7919) % 300000)
                s3.put_object(Bucket="crash", Key=key, Body=body)
        except Exception as e:  # the endpoint was killed
            print("stopped at %s: %s" % (key, type(e).__name__))
            break
        acks.write("%s %s\n" % (key, hashlib.md5(body).hexdigest()))
        acks.flush()
        os.fsync(acks.fileno())
    print("ok crash_writer")


def case_crash_check():
    """Every acknowledged object reads back whole; nothing else is listed but, possibly, the one
    request in flight at the kill (committed, its answer lost), which must be whole too."""
    s3 = client()
    acks = dict(line.split() for line in open(os.environ["ACKS"]))
    listed = {o["Key"]: o for p in s3.get_paginator("list_objects_v2").paginate(Bucket="crash") for o in p.get("Contents", [])}
    missing = [k for k in acks if k not in listed]
    assert not missing, "acknowledged but not listed: %s" % missing[:5]
    extra = [k for k in listed if k not in acks]
    assert len(extra) <= int(os.environ.get("KILLS", "1")), "listed but never acknowledged: %s" % extra
    for k in list(acks) + extra:
        data = s3.get_object(Bucket="crash", Key=k)["Body"].read()
        if k in acks:
            assert hashlib.md5(data).hexdigest() == acks[k], "%s reads back different bytes" % k
        else:
            assert len(data) == listed[k]["Size"], "%s (in flight at the kill) is not whole" % k
    print("ok crash_check %d acknowledged, %d in flight" % (len(acks), len(extra)))


if __name__ == "__main__":
    globals()["case_" + sys.argv[1]]()
