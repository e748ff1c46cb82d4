"""A test app whose periodic task has an invalid cron expression: importing it fails."""

import tracedjobs

app = tracedjobs.App()


@app.periodic(cron="every 5 minutes")
@app.task(name="never")
def never(timestamp: int) -> None:
    return None
