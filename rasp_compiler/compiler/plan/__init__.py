"""Planning: how every s-op is represented and in which layer it is made.

``make.plan_sop`` gives a :class:`~.types.Draft` (or a :class:`~.types.PlanFailure`);
``compiler.finalize`` turns a draft into the frozen :class:`~.types.Plan`.  The
modules: ``types`` (the data), ``state`` (the planner's working state), ``builder``
(representations), ``attention`` (heads), ``elementwise`` (MLP jobs), ``make``
(planning the output, collecting failures, pruning).
"""
