def signal(*args):
    # a BMAC user's guard: refuses penny stocks (raises for one symbol, not for the others)
    df = args[0]
    n = args[1]
    factor_name = args[2]
    if df["close"].iloc[-1] < 1:
        raise ValueError(f"penny stock, close {df['close'].iloc[-1]:.4f}")
    df[factor_name] = df["close"].rolling(n).mean()
    return df
