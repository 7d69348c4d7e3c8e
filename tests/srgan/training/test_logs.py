"""The run's CSV logs."""
import csv

from srgan.training.logs import CsvLog


def test_csv_log_drops_rows_logged_after_the_resumed_checkpoint(tmp_path):
    log = CsvLog(tmp_path / "log.csv", 0)
    for step in (10, 20, 30):
        log.write({"step": step, "loss": 0.5})
    log.write({"step": 40, "loss": 0.4, "loss_adv": 0.7})  # a new column rewrites the header
    again = CsvLog(tmp_path / "log.csv", 20)  # crashed after the step-20 checkpoint
    again.write({"step": 30, "loss": 0.3})
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["step"] for r in rows] == ["10", "20", "30"] and rows[-1]["loss"] == "0.3"
    assert list(rows[0]) == ["step", "loss", "loss_adv"]
