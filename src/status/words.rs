//! The words the status record, `heartwatch status` and `--json` use for
//! a rule's kind, health, ladder step and repair ending: each an enum with
//! its word, read back by `record`.

/// What a rule watches, in the words the status uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleKind {
    #[default]
    Heartbeat,
    Process,
    Command,
    System,
    Interface,
}

impl RuleKind {
    pub const ALL: [RuleKind; 5] = [
        RuleKind::Heartbeat,
        RuleKind::Process,
        RuleKind::Command,
        RuleKind::System,
        RuleKind::Interface,
    ];

    pub fn word(self) -> &'static str {
        match self {
            RuleKind::Heartbeat => "heartbeat",
            RuleKind::Process => "process",
            RuleKind::Command => "command",
            RuleKind::System => "system",
            RuleKind::Interface => "interface",
        }
    }

    pub(super) fn from_word(word: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.word() == word)
    }
}

impl std::fmt::Display for RuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Where a rule's ladder stands (`crate::ladder::State`), as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LadderStep {
    #[default]
    Idle,
    Repairing,
    Waiting,
    Recovering,
    Exhausted,
}

impl LadderStep {
    pub const ALL: [LadderStep; 5] = [
        LadderStep::Idle,
        LadderStep::Repairing,
        LadderStep::Waiting,
        LadderStep::Recovering,
        LadderStep::Exhausted,
    ];

    pub fn word(self) -> &'static str {
        match self {
            LadderStep::Idle => "idle",
            LadderStep::Repairing => "repairing",
            LadderStep::Waiting => "waiting",
            LadderStep::Recovering => "recovering",
            LadderStep::Exhausted => "exhausted",
        }
    }

    pub(super) fn from_word(word: &str) -> Option<LadderStep> {
        LadderStep::ALL.into_iter().find(|s| s.word() == word)
    }
}

impl From<crate::ladder::State> for LadderStep {
    fn from(state: crate::ladder::State) -> LadderStep {
        use crate::ladder::State;
        match state {
            State::Idle => LadderStep::Idle,
            State::Repairing(_) => LadderStep::Repairing,
            State::Waiting(_) => LadderStep::Waiting,
            State::Recovering(_) => LadderStep::Recovering,
            State::Exhausted => LadderStep::Exhausted,
        }
    }
}

/// How a repair command ended (`crate::repair::Ending`), as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepairEnd {
    #[default]
    Succeeded,
    Failed,
    TimedOut,
    NotStarted,
    Lost,
    DryRun,
    Unkillable,
}

impl RepairEnd {
    pub const ALL: [RepairEnd; 7] = [
        RepairEnd::Succeeded,
        RepairEnd::Failed,
        RepairEnd::TimedOut,
        RepairEnd::NotStarted,
        RepairEnd::Lost,
        RepairEnd::DryRun,
        RepairEnd::Unkillable,
    ];

    pub fn word(self) -> &'static str {
        match self {
            RepairEnd::Succeeded => "succeeded",
            RepairEnd::Failed => "failed",
            RepairEnd::TimedOut => "timed-out",
            RepairEnd::NotStarted => "not-started",
            RepairEnd::Lost => "lost",
            RepairEnd::DryRun => "dry-run",
            RepairEnd::Unkillable => "unkillable",
        }
    }

    pub(super) fn from_word(word: &str) -> Option<RepairEnd> {
        RepairEnd::ALL.into_iter().find(|e| e.word() == word)
    }
}

impl From<crate::repair::Ending> for RepairEnd {
    fn from(ending: crate::repair::Ending) -> RepairEnd {
        use crate::repair::Ending;
        match ending {
            Ending::Exited(0) => RepairEnd::Succeeded,
            Ending::Exited(_) | Ending::Signalled(_) => RepairEnd::Failed,
            Ending::TimedOut => RepairEnd::TimedOut,
            Ending::NotStarted(_) => RepairEnd::NotStarted,
            Ending::Lost(_) => RepairEnd::Lost,
            Ending::DryRun => RepairEnd::DryRun,
            Ending::Unkillable(_) => RepairEnd::Unkillable,
        }
    }
}

/// A rule's health, in the words the status uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleHealth {
    #[default]
    Starting,
    Healthy,
    Failing,
}

impl RuleHealth {
    pub fn word(self) -> &'static str {
        match self {
            RuleHealth::Starting => "starting",
            RuleHealth::Healthy => "healthy",
            RuleHealth::Failing => "failing",
        }
    }

    pub(super) fn from_word(word: &str) -> Option<RuleHealth> {
        [
            RuleHealth::Starting,
            RuleHealth::Healthy,
            RuleHealth::Failing,
        ]
        .into_iter()
        .find(|h| h.word() == word)
    }
}

impl From<crate::health::Health> for RuleHealth {
    fn from(health: crate::health::Health) -> RuleHealth {
        use crate::health::Health;
        match health {
            Health::Starting => RuleHealth::Starting,
            Health::Healthy => RuleHealth::Healthy,
            Health::Failing(_) => RuleHealth::Failing,
        }
    }
}
