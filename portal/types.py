"""Column types shared by the models."""

from sqlalchemy import BigInteger, Integer

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
