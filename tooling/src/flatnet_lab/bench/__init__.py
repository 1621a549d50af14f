"""``flatnet bench``: flatnet against the wire, the overlay and the reference plugins.

Public API:
  runner.run(profile, out_dir, command, skip=(), console=None) -> Results
      measure every section, print the table, write BENCHMARKS.md + charts
  runner.measure(profile, skip=(), tick=...) -> Results   (no files, no screen)
  profile.QUICK / profile.FULL / profile.PROFILES
  results.Results / Measurement   what was measured (raw samples per repeat)
"""
