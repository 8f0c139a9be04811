"""Everything innerlens sends to MLflow and reads back, one job per module:

- ``store``: where runs go (tracking store, experiment, tags), how to look at them;
- ``preflight``: checks before a run exists, so bad input is one line and no run;
- ``delivery``: the spool of calls an outage held back, and ``innerlens sync``;
- ``writer``: ``RunTracker``, one background writer per run;
- ``reads``: checkpoints, configs, histories and artifacts read back;
- ``history``: many runs at once: a study's nested runs, metric histories in bulk;
- ``registry``: the model registry;
- ``lifecycle``: starting, resuming, nesting and ending runs.

Callers use ``from innerlens import tracking`` and the names below.
"""
from innerlens.tracking.delivery import (  # noqa: F401
    MAX_METRICS_PER_BATCH,
    deliver_spool,
    first_line,
    is_outage,
    say,
    send_entry,
    spool_root,
    sync,
)
from innerlens.tracking.history import (  # noqa: F401
    bulk_metric_history,
    child_runs,
    children,
    children_history,
    fetch_histories,
    fetch_history,
    latest_parent_with_children,
    metric_history,
    named_study,
    search_runs,
)
from innerlens.tracking.lifecycle import (  # noqa: F401
    EndsRunAs,
    RunContext,
    end_run_as,
    open_finished_run,
    placement,
    start_run,
)
from innerlens.tracking.model_registry import (  # noqa: F401
    REGISTRY_PREFIX,
    download_registered,
    register_model,
)
from innerlens.tracking.preflight import (  # noqa: F401
    PREFLIGHT_TIMEOUT_S,
    check_no_spool,
    check_run_exists,
    check_tracking_store,
    has_checkpoint,
    resumable_config,
)
from innerlens.tracking.reads import (  # noqa: F401
    download_run_artifacts,
    last_logged_step,
    list_checkpoints,
    load_checkpoint,
    load_config,
    load_history,
    read_csv_artifact,
    running_runs_of_unit,
    task_run,
)
from innerlens.tracking.store import (  # noqa: F401
    DEFAULT_EXPERIMENT,
    EXPERIMENT_KIND,
    TAG_EXECUTOR,
    TAG_FAMILY,
    TAG_GENERATION,
    TAG_GIT_COMMIT,
    TAG_RAY_NODE,
    TAG_RESUMED,
    TAG_SEED,
    TAG_STEP_UNIT,
    TAG_TASK,
    TAG_UNIT,
    TAG_VARIANT,
    configure_tracking,
    detect_outages_quickly,
    embedded_store,
    experiment_id,
    figure_name,
    git_commit,
    mark_as_model_training,
    models_root,
    project_root,
    run_page,
    runs_table,
    tracking_uri,
    ui_hint,
)
from innerlens.tracking.writer import (  # noqa: F401
    RunTracker,
)
