# Template-owned: `copier update` brings its new versions. See GUIDE.md, "Who owns what".
"""Streaming, bounded-memory data drift: a window of served rows against the training data.

    reference = Reference.build(train, kinds={"age": "integer", "city": "categorical"},
                                prediction="prediction")
    accumulator = Accumulator(reference)
    for chunk in pd.read_csv("requests.csv", chunksize=100_000):
        accumulator.update(chunk)
    report = accumulator.result(thresholds)  # params.yaml monitor: params.MonitorParams
    print(report.drifted_features, report.to_json())

The reference is summarised once; the window is consumed chunk by chunk into fixed-size
counts, so memory does not grow with the window. One job per module:

- ``columns``: the kinds of column, and raw values as numbers or categories;
- ``reference``: the training data's summary (``Reference``), saved as JSON;
- ``statistics``: PSI, exact Kolmogorov-Smirnov and chi-square, from counts;
- ``report``: the thresholds, each column's result and the rule that decides drift;
- ``accumulate``: the window, chunk by chunk (``Accumulator``, ``check_drift``).
"""
