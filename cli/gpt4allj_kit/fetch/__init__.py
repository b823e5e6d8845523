"""The fetch stage: assets by revision, resolved to commit shas, downloaded, verified, locked.

Read it in pipeline order:
- `stage`      `fetch_assets()`: what a run needs -> snapshots, the asset lock and the fetch manifest
- `snapshot`   `fetch_snapshot()`: one repo at one revision, from the hub or the cache, verified
- `revisions`  tag -> commit sha, and the revisions a repo has
- `listing`    which files of a commit the kit takes, from the hub's tree listing
- `download`   the kit's own download of one file, resumable across processes
- `endpoint`   HF_ENDPOINT and the token: no token in clear, and only to the endpoint's origin
- `cache`      the hub cache: where it is, its layout, files checked against the hub or the lock
- `lock`       the asset lock (`gpt4allj-kit.lock.json`): its one reader and writer
- `errors`     hub client exceptions -> one-line HubErrors
- `tasks`      which datasets (and which of their configs) the evaluation tasks read
- `tiny`       the smoke world's fetch: generated assets, locked by their content
"""
