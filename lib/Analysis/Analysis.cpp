// Placeholder replaced by the analysis library.
