from decimal import Decimal


def test_three_tiny_deducts_leave_exactly_three_thousandths_less(api, make_org, make_price):
    make_price("tiny_call", "0.001")
    org = make_org(balance=10)
    for _ in range(3):
        assert (
            api.post("/credits/deduct", org, json={"feature_key": "tiny_call"}).status_code == 201
        )
    body = api.get("/balance", org).json
    assert body["balance"] == Decimal("9.997")
    assert api.get("/balance", org).get_data(as_text=True).count("9.997") == 2
