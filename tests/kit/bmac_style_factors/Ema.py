def signal(*args):
    df = args[0]
    n = args[1]
    factor_name = args[2]
    df[factor_name] = df["close"].ewm(span=n, adjust=False).mean()
    return df
