from spark_jobs.labels import extend_label_map


def test_extend_label_map_appends_sorted_new_labels_without_renumbering():
    assert extend_label_map({}, ["b", "a"]) == {"a": 0, "b": 1}
    assert extend_label_map({"z": 0, "b": 1}, ["a", "b", "c"]) == {"z": 0, "b": 1, "a": 2, "c": 3}
