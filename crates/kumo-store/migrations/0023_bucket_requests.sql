-- Issue 14: requests to the S3 endpoint, per bucket, hour (its start, RFC 3339 UTC) and class
-- (`write`: requests that change something; `read`: the others), billed per 1,000. Each
-- controller counts in memory and adds its counts here every few seconds.
CREATE TABLE bucket_requests (
    bucket_id TEXT NOT NULL REFERENCES buckets (id),
    hour TEXT NOT NULL,
    class TEXT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, hour, class)
);
