"""Flows for the browser tests: the seed's parent/child shape (one child fails dividing by
zero) and a flow with typed parameters to run from the UI's form."""

from legato import flow, task


@task
def ingest(month: int) -> list[int]:
    print(f"downloading month {month}")
    return list(range(3000))


@task
def clean(rows: list[int]) -> list[int]:
    print(f"rows: {len(rows)}")
    return rows


@task
def divide(n: int) -> float:
    return 1 / n


@flow(name="GCP flow", log_prints=True)
def child(month: int, fail: bool = False) -> int:
    rows = ingest.submit(month)
    cleaned = clean.submit(rows)
    if fail:
        divide(0)
    return len(cleaned.result())


@flow(name="Parent GCP flow", log_prints=True)
def parent(months: list[int] = [1, 2, 3]) -> None:  # noqa: B006 - the seed's signature
    for m in months:
        try:
            child(m, fail=(m == 3))
        except ZeroDivisionError:
            pass


@flow(name="monthly-report", log_prints=True)
def report(month: int, city: str = "NYC", options: dict = {"color": "yellow"}) -> str:  # noqa: B006
    text = f"report for {city}, month {month}, {options}"
    print(text)
    return text


if __name__ == "__main__":
    parent()
