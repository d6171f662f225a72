def signal(*args):
    df = args[0]
    n = args[1]
    factor_name = args[2]
    ma = df["close"].rolling(n).mean()
    std = df["close"].rolling(n).std()
    df[factor_name] = (df["close"] - ma) / std
    return df
