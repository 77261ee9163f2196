#!/usr/bin/env python3
"""The DuckDB peer of `lineage replay`: the same CloudTrail .json.gz files, normalized
and attributed (credential → issuing credential → … → root → agent → owner) in SQL.

    duckdb_peer.py --sim DIR [--threads 1,2] [--json OUT] [--ours-events DIR/tables/events]

DIR is a simulator output (DIR/AWSLogs/**.json.gz, DIR/inventory.toml). For each thread
count a fresh in-memory DuckDB:
  1. normalize: read_json over the gzipped S3 delivery files with explicit column types
     (no sampling / schema inference), unnest `Records`, project the fields attribution
     needs into a table `ev` (credential, principal, session context, issuance facts);
  2. graph: issuance edges (AssumeRole*, GetSessionToken, GetFederationToken →
     responseElements.credentials.accessKeyId; CreateAccessKey →
     responseElements.accessKey.accessKeyId), child → parent credential;
  3. attribute: a recursive CTE walks each used credential's chain until a credential
     declared in the inventory (`declared` / `issuance-chain`), an IAM user bound to an
     agent or a human's alias (`principal-alias`); else the root session's role bound to
     an agent or its session name / sourceIdentity a human's alias (`session-chain`);
     else the user-agent glob (`fingerprint`); then agent → owner;
  4. materialize every event with its attribution (table `attributed`).
The whole of 1-4 is timed. Differences from lineage replay (stated in BENCHMARKS.md):
DuckDB attributes with the graph of the whole archive (not as of each event's time), runs
no detectors, writes no Parquet and no alert files, and reads only the fields above.
With --ours-events, the per-event agent/owner is compared with lineage's `events` table
(outside the timing).
"""
import argparse
import glob
import json
import os
import sys
import time
import tomllib

import duckdb

V = "VARCHAR"
# The fields read, as a JSON structure (from_json) and as a SQL type (read_json columns).
RECORD = {
    "eventID": V, "eventTime": "TIMESTAMP", "eventSource": V, "eventName": V,
    "awsRegion": V, "sourceIPAddress": V, "userAgent": V, "errorCode": V, "readOnly": "BOOLEAN",
    "userIdentity": {
        "type": V, "principalId": V, "arn": V, "accountId": V, "accessKeyId": V,
        "userName": V, "invokedBy": V,
        "sessionContext": {
            "sessionIssuer": {"type": V, "arn": V, "userName": V},
            "sourceIdentity": V,
            "attributes": {"creationDate": V, "mfaAuthenticated": V},
        },
    },
    "requestParameters": {"roleArn": V, "roleSessionName": V, "sourceIdentity": V, "userName": V},
    "responseElements": {
        "credentials": {"accessKeyId": V},
        "accessKey": {"accessKeyId": V, "userName": V, "status": V},
    },
    "resources": [{"ARN": V, "accountId": V, "type": V}],
}


def sql_type(t):
    if isinstance(t, dict):
        return "STRUCT(" + ", ".join(f'"{k}" {sql_type(v)}' for k, v in t.items()) + ")"
    if isinstance(t, list):
        return sql_type(t[0]) + "[]"
    return t


# Two ways to read the files. `objects` (the faster, used for the ratio): each file is
# one JSON object, read whole by read_json_objects and turned into typed structs by
# from_json with an explicit structure. `read_json`: the table function with explicit
# column types (the documented way; no sampling), which is several times slower here
# because each file is one huge object.
READERS = {
    "objects": "SELECT unnest(from_json(json, '%s').Records) AS r "
               "FROM read_json_objects(?, compression = 'gzip', maximum_object_size = %%d)"
               % json.dumps({"Records": [RECORD]}),
    "read_json": "SELECT unnest(Records) AS r FROM read_json(?, columns = {'Records': '%s'}, "
                 "format = 'unstructured', compression = 'gzip', maximum_object_size = %%d)"
                 % sql_type([RECORD]),
}

NORMALIZE = """
CREATE TABLE ev AS
SELECT
  r.eventID AS event_id,
  r.eventTime AS time,
  split_part(r.eventSource, '.', 1) AS service,
  r.eventName AS operation,
  split_part(r.eventSource, '.', 1) || ':' || r.eventName AS action,
  r.userIdentity.accessKeyId AS credential_id,
  CASE WHEN starts_with(r.userIdentity.accessKeyId, 'AKIA') THEN 'aws-access-key'
       WHEN starts_with(r.userIdentity.accessKeyId, 'ASIA') THEN 'aws-session-key' END AS credential_kind,
  r.userIdentity."type" AS principal_kind,
  r.userIdentity.userName AS principal_name,
  r.userIdentity.arn AS principal_arn,
  r.userIdentity.accountId AS account,
  r.userIdentity.sessionContext.sessionIssuer.arn AS session_issuer,
  CASE WHEN r.userIdentity."type" = 'AssumedRole' THEN split_part(r.userIdentity.arn, '/', 3) END AS role_session_name,
  r.userIdentity.sessionContext.sourceIdentity AS source_identity,
  r.userAgent AS user_agent,
  r.sourceIPAddress AS source_ip,
  r.errorCode AS error_code,
  r.awsRegion AS region,
  [x.ARN FOR x IN coalesce(r.resources, [])] AS resources,
  coalesce(r.responseElements.credentials.accessKeyId, r.responseElements.accessKey.accessKeyId) AS issued_credential,
  CASE r.eventName WHEN 'AssumeRole' THEN 'assume-role'
                   WHEN 'AssumeRoleWithSAML' THEN 'assume-role-with-saml'
                   WHEN 'AssumeRoleWithWebIdentity' THEN 'assume-role-with-web-identity'
                   WHEN 'GetSessionToken' THEN 'get-session-token'
                   WHEN 'GetFederationToken' THEN 'get-federation-token'
                   WHEN 'CreateAccessKey' THEN 'create-access-key' END AS issuance_method,
  r.requestParameters.roleArn AS issued_role,
  r.requestParameters.roleSessionName AS issued_session_name,
  r.requestParameters.sourceIdentity AS issued_source_identity,
  coalesce(r.responseElements.accessKey.userName, r.requestParameters.userName) AS issued_user
FROM ({reader})
"""

ATTRIBUTE = """
CREATE TABLE edges AS
SELECT DISTINCT ON (issued_credential)
  issued_credential AS child, credential_id AS parent, issuance_method AS method,
  issued_role AS role, issued_session_name AS session_name,
  issued_source_identity AS source_identity, issued_user AS iam_user
FROM ev
WHERE issued_credential IS NOT NULL AND error_code IS NULL AND issuance_method IS NOT NULL
ORDER BY issued_credential, time;

-- What the logs say a credential is: its IAM user (long-lived keys), its session's role,
-- session name and sourceIdentity.
CREATE TABLE cred AS
WITH used AS (
  SELECT credential_id,
         any_value(principal_name) FILTER (WHERE principal_kind = 'IAMUser') AS iam_user,
         any_value(session_issuer) AS role,
         any_value(role_session_name) AS session_name,
         any_value(source_identity) AS source_identity
  FROM ev WHERE credential_id IS NOT NULL GROUP BY credential_id
)
SELECT coalesce(u.credential_id, e.child) AS credential_id,
       coalesce(e.iam_user, u.iam_user) AS iam_user,
       coalesce(e.role, u.role) AS role,
       coalesce(e.session_name, u.session_name) AS session_name,
       coalesce(e.source_identity, u.source_identity) AS source_identity,
       e.parent
FROM used u FULL OUTER JOIN edges e ON e.child = u.credential_id;

-- Each used credential's chain, stopping at a declared credential or a bound IAM user.
CREATE TABLE walk AS
WITH RECURSIVE w(start, cur, depth) AS (
  SELECT credential_id, credential_id, 0 FROM cred
  UNION ALL
  SELECT w.start, c.parent, w.depth + 1
  FROM w JOIN cred c ON c.credential_id = w.cur
  LEFT JOIN inv_declared d ON d.credential = w.cur
  LEFT JOIN inv_iam_user b ON b.iam_user = c.iam_user
  WHERE c.parent IS NOT NULL AND d.credential IS NULL AND b.iam_user IS NULL AND w.depth < 32
)
SELECT * FROM w;

CREATE TABLE resolved AS
WITH root AS (
  SELECT DISTINCT ON (start) start, cur AS root, depth FROM walk ORDER BY start, depth DESC
), candidates AS (
  -- 1: declared / issuance chain / IAM user bound to an agent / IAM user a human alias
  SELECT r.start, r.root, d.agent, NULL AS human,
         CASE WHEN r.depth = 0 THEN 'declared' ELSE 'issuance-chain' END AS method, 1 AS rank
  FROM root r JOIN inv_declared d ON d.credential = r.root
  UNION ALL
  SELECT r.start, r.root, b.agent, NULL,
         CASE WHEN r.depth = 0 THEN 'principal-alias' ELSE 'issuance-chain' END, 2
  FROM root r JOIN cred c ON c.credential_id = r.root JOIN inv_iam_user b ON b.iam_user = c.iam_user
  UNION ALL
  SELECT r.start, r.root, NULL, h.human,
         CASE WHEN r.depth = 0 THEN 'principal-alias' ELSE 'issuance-chain' END, 3
  FROM root r JOIN cred c ON c.credential_id = r.root JOIN inv_alias h ON h.alias = c.iam_user
  -- 2: the root session's role bound to an agent, or its session name / sourceIdentity a human
  UNION ALL
  SELECT r.start, r.root, b.agent, NULL,
         CASE WHEN r.depth = 0 THEN 'session-chain' ELSE 'issuance-chain' END, 4
  FROM root r JOIN cred c ON c.credential_id = r.root JOIN inv_role b ON b.role = c.role
  UNION ALL
  SELECT r.start, r.root, NULL, h.human,
         CASE WHEN r.depth = 0 THEN 'session-chain' ELSE 'issuance-chain' END, 5
  FROM root r JOIN cred c ON c.credential_id = r.root
  JOIN inv_alias h ON h.alias = c.source_identity OR h.alias = c.session_name
)
SELECT DISTINCT ON (start) start AS credential_id, root, agent, human, method
FROM candidates ORDER BY start, rank;

-- A use that names no credential (SAML / web-identity STS calls): its principal is an
-- agent's principal or a human's alias, else the role it asks for is bound to an agent.
CREATE TABLE nocred AS
SELECT e.event_id,
       coalesce(pa.agent, CASE WHEN ha.human IS NULL THEN rb.agent END) AS agent,
       coalesce(pa.owner, ha.human, ro.owner) AS owner
FROM ev e
LEFT JOIN (SELECT p.principal, p.agent, w.owner FROM inv_principal p JOIN inv_owner w USING (agent)) pa
  ON pa.principal = e.principal_name
LEFT JOIN inv_alias ha ON ha.alias = e.principal_name
LEFT JOIN inv_role rb ON rb.role = [x FOR x IN e.resources IF x LIKE '%:role/%'][1]
LEFT JOIN inv_owner ro ON ro.agent = rb.agent
WHERE e.credential_id IS NULL AND e.principal_kind IS DISTINCT FROM 'AWSService';

CREATE TABLE attributed AS
SELECT e.event_id, e.time, e.credential_id, r.root AS root_credential,
       coalesce(r.agent, n.agent, f.agent) AS agent,
       coalesce(r.human, o.owner, n.owner, fo.owner) AS owner,
       CASE WHEN r.method IS NOT NULL THEN r.method
            WHEN n.owner IS NOT NULL THEN 'principal-alias'
            WHEN f.agent IS NOT NULL THEN 'fingerprint'
            WHEN e.credential_id IS NULL AND e.principal_kind = 'AWSService' THEN NULL
            ELSE 'none' END AS method,
       e.action, e.service, e.source_ip, e.user_agent
FROM ev e
LEFT JOIN resolved r ON r.credential_id = e.credential_id
LEFT JOIN inv_owner o ON o.agent = r.agent
LEFT JOIN nocred n ON n.event_id = e.event_id
LEFT JOIN LATERAL (
  SELECT u.agent FROM inv_ua u
  WHERE r.method IS NULL AND n.owner IS NULL AND e.user_agent LIKE u.pattern
  ORDER BY u.agent LIMIT 1) f ON true
LEFT JOIN inv_owner fo ON fo.agent = f.agent;
"""


def load_inventory(con, path):
    with open(path, "rb") as f:
        inv = tomllib.load(f)
    declared, iam, roles, uas, owners, aliases, principals = [], [], [], [], [], [], []
    for h in inv.get("human", []):
        names = {h["id"]}
        if h.get("email"):
            names.add(h["email"])
        for vals in (h.get("aliases") or {}).values():
            names.update(vals if isinstance(vals, list) else [vals])
        aliases += [(a, h["id"]) for a in names]
    for a in inv.get("agent", []):
        owners.append((a["id"], a.get("owner")))
        declared += [(c, a["id"]) for c in a.get("credentials", [])]
        iam += [(u, a["id"]) for u in a.get("aws_iam_users", [])]
        roles += [(r, a["id"]) for r in a.get("aws_roles", [])]
        principals += [(x, a["id"]) for x in a.get("principals", [])]
        for g in a.get("user_agents", []):
            pat = g.replace("%", "\\%").replace("_", "\\_").replace("*", "%").replace("?", "_")
            uas.append((pat, a["id"]))
    for name, cols, rows in [
        ("inv_declared", "credential VARCHAR, agent VARCHAR", declared),
        ("inv_iam_user", "iam_user VARCHAR, agent VARCHAR", iam),
        ("inv_role", "role VARCHAR, agent VARCHAR", roles),
        ("inv_ua", "pattern VARCHAR, agent VARCHAR", uas),
        ("inv_owner", "agent VARCHAR, owner VARCHAR", owners),
        ("inv_alias", "alias VARCHAR, human VARCHAR", aliases),
        ("inv_principal", "principal VARCHAR, agent VARCHAR", principals),
    ]:
        con.execute(f"CREATE TABLE {name} ({cols})")
        if rows:
            con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    # An alias two humans claim is ambiguous: never guessed, as in lineage.
    con.execute("DELETE FROM inv_alias WHERE alias IN "
                "(SELECT alias FROM inv_alias GROUP BY alias HAVING count(DISTINCT human) > 1)")
    return len(inv.get("human", [])), len(inv.get("agent", []))


def max_object_size(files):
    """The largest uncompressed file (gzip's ISIZE trailer), rounded up: read_json
    buffers a whole top-level object, and its default limit (16 MB) is too small for
    big delivery files while a huge fixed limit makes it allocate that much per thread."""
    biggest = 0
    for f in files:
        with open(f, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            biggest = max(biggest, int.from_bytes(fh.read(4), "little"))
    return max(16 << 20, 1 << (2 * biggest).bit_length())


def run(sim, threads, reader, ours_events=None):
    files = sorted(glob.glob(os.path.join(sim, "AWSLogs", "**", "*.json.gz"), recursive=True))
    files = [f for f in files if "CloudTrail-Digest" not in f]
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = false")
    load_inventory(con, os.path.join(sim, "inventory.toml"))
    t0 = time.perf_counter()
    con.execute(NORMALIZE.format(reader=READERS[reader] % max_object_size(files)), [files])
    t1 = time.perf_counter()
    for stmt in ATTRIBUTE.split(";"):
        if stmt.strip():
            con.execute(stmt)
    t2 = time.perf_counter()
    events = con.execute("SELECT count(*) FROM ev").fetchone()[0]
    methods = dict(con.execute(
        "SELECT coalesce(method, 'service'), count(*) FROM attributed GROUP BY ALL ORDER BY 1").fetchall())
    out = {
        "reader": reader, "threads": threads, "files": len(files), "events": events,
        "secs": t2 - t0, "normalize_secs": t1 - t0, "attribute_secs": t2 - t1,
        "events_per_sec": events / (t2 - t0), "methods": methods,
    }
    if ours_events and os.path.isdir(ours_events):
        # lineage's events table holds every attributed use; compare agent and owner.
        row = con.execute(f"""
            WITH ours AS (SELECT event_id, agent, owner FROM read_parquet('{ours_events}/**/*.parquet')
                          WHERE source = 'cloudtrail')
            SELECT count(*),
                   count(*) FILTER (WHERE a.agent IS NOT DISTINCT FROM o.agent
                                    AND a.owner IS NOT DISTINCT FROM o.owner),
                   count(*) FILTER (WHERE o.owner IS NOT NULL),
                   count(*) FILTER (WHERE a.owner IS NOT NULL)
            FROM ours o JOIN attributed a USING (event_id)""").fetchone()
        out["agreement"] = {"joined": row[0], "same_agent_and_owner": row[1],
                            "ours_with_owner": row[2], "duckdb_with_owner": row[3]}
    con.close()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sim", required=True)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--json")
    p.add_argument("--ours-events")
    p.add_argument("--readers", default="objects", help="objects,read_json")
    a = p.parse_args()
    results = []
    runs = [(rd, int(t)) for rd in a.readers.split(",") for t in a.threads.split(",")]
    for i, (reader, t) in enumerate(runs):
        r = run(a.sim, t, reader, a.ours_events if i == 0 else None)
        print(f"duckdb {duckdb.__version__} {reader} threads={t}: {r['events']} events in {r['secs']:.2f}s "
              f"(normalize {r['normalize_secs']:.2f}s, attribute {r['attribute_secs']:.2f}s) = "
              f"{r['events_per_sec']:.0f} events/s; methods {r['methods']}"
              + (f"; agreement {r['agreement']}" if "agreement" in r else ""), file=sys.stderr)
        results.append(r)
    doc = {"duckdb_version": duckdb.__version__, "runs": results}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)
    else:
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
