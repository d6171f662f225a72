def signal(*args):
    df = args[0]
    n = args[1]
    factor_name = args[2]
    df[factor_name] = 4 * df["close"].rolling(n).std() / df["close"].rolling(n).mean()
    return df
