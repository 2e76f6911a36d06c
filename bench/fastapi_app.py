"""The same task API built the common way with FastAPI + SQLModel: what `bench.compare` measures ours against.

Written as FastAPI's and SQLModel's tutorials write it: one table model, a session per request from
a dependency, plain `def` endpoints (FastAPI runs them in its thread pool), `session.refresh` after a
commit, pydantic models for the bodies and answers, served by uvicorn (uvloop, httptools) with as
many workers as the service's gunicorn has. It covers what the comparison sends (get, create,
update, toggle, the first page of a list) on the service's own tables and answers the same JSON;
it keeps none of the service's contract beyond that (no list versions, change log, ETags, quotas,
authentication or error envelope), so every difference it shows is the cheaper side's at most.
Never part of the service; requirements-bench.txt installs it.
"""

import os
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import BigInteger, Column, DateTime, Identity, func
from sqlmodel import Field, Session, SQLModel, create_engine, select


class Task(SQLModel, table=True):
    __tablename__ = "tasks"

    user_id: str = Field(primary_key=True)
    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    title: str
    description: str | None = None
    completed: bool = False
    created_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True),
                                                                      server_default=func.now(), nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True),
                                                                      server_default=func.now(), nullable=False))


class TaskIn(SQLModel):
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)


class TaskOut(SQLModel):
    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime


engine = create_engine(os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
                       pool_size=8, max_overflow=8, pool_pre_ping=False)
app = FastAPI(title="Todo tasks (FastAPI + SQLModel comparison build)")


def get_session():
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _task(session, user_id, task_id):
    task = session.get(Task, (user_id, task_id))
    if task is None:
        raise HTTPException(status_code=404, detail="No task with this id exists for this user.")
    return task


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.get("/api/{user_id}/tasks", response_model=list[TaskOut])
def list_tasks(user_id: str, session: SessionDep, limit: int = 50):
    query = select(Task).where(Task.user_id == user_id).order_by(Task.created_at, Task.id).limit(limit)
    return session.exec(query).all()


@app.post("/api/{user_id}/tasks", response_model=TaskOut, status_code=201)
def create_task(user_id: str, body: TaskIn, session: SessionDep):
    task = Task(user_id=user_id, title=body.title, description=body.description)
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


@app.get("/api/{user_id}/tasks/{task_id}", response_model=TaskOut)
def get_task(user_id: str, task_id: int, session: SessionDep):
    return _task(session, user_id, task_id)


@app.put("/api/{user_id}/tasks/{task_id}", response_model=TaskOut)
def update_task(user_id: str, task_id: int, body: TaskIn, session: SessionDep):
    task = _task(session, user_id, task_id)
    task.title, task.description, task.updated_at = body.title, body.description, datetime.now(UTC)
    session.commit()
    session.refresh(task)
    return task


@app.patch("/api/{user_id}/tasks/{task_id}/complete", response_model=TaskOut)
def toggle_task(user_id: str, task_id: int, session: SessionDep):
    task = _task(session, user_id, task_id)
    task.completed, task.updated_at = not task.completed, datetime.now(UTC)
    session.commit()
    session.refresh(task)
    return task
